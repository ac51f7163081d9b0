"""Turns the JSON written by bench/run into docs/PERFORMANCE.md: one table per
model with kiln's backends next to PyTorch's best setting, speedups as
ratios measured in the same run, GFLOP/s, memory, and the targets of the
oneDNN backend marked met or missed.

usage: report.py OUT_DIR "COMMAND"   (prints Markdown)"""
import datetime
import json
import os
import platform
import subprocess
import sys

out_dir, command = sys.argv[1], sys.argv[2]
modes = [("train", "training step B=64, T=128"), ("infer", "inference B=64, T=128"), ("infer_b1", "inference B=1, T=128")]


def cpu():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


lines = ["# kiln performance", "",
         f"Produced by `{command}` on {datetime.date.today()}, {cpu()}, {os.cpu_count()} cores. "
         "Every figure is a median over the repeats of one run; ratios compare numbers from the same run "
         "(speedup = PyTorch time / kiln time). PyTorch 1.13 eager is timed with 1 and 2 threads, with and "
         "without tcmalloc preloaded, and compared at its fastest. kiln memory = parameters + optimizer state "
         "+ the backend's arena; PyTorch memory = growth of the process's peak RSS from before the model is "
         "built (parameters, gradients, Adam state, activations).", ""]
targets = []
for model in ["additive", "sdpa"]:
    kiln_path, torch_path = os.path.join(out_dir, f"kiln_{model}.json"), os.path.join(out_dir, f"torch_{model}.json")
    if not os.path.exists(kiln_path) or not os.path.exists(torch_path):
        continue
    kiln = json.load(open(kiln_path))["results"]
    torch = [json.loads(l) for l in open(torch_path) if l.strip()]
    backends = []
    for r in kiln:
        if r["backend"] not in backends:
            backends.append(r["backend"])
    lines += [f"## classifier_{model}.kiln", ""]
    header = "| | " + " | ".join(f"kiln {b}" for b in backends) + " | PyTorch (best) | speedup " + \
             " / ".join(backends) + " |"
    lines += [header, "|---" * (len(backends) + 3) + "|"]
    for mode, label in modes:
        ks = {r["backend"]: r for r in kiln if r["what"] == mode}
        ts = [t for t in torch if t["mode"] == mode]
        if not ks or not ts:
            continue
        best = min(ts, key=lambda t: t["median_ms"])
        setting = f"{best['threads']} thr{', tcmalloc' if best['tcmalloc'] else ''}"
        cells = []
        for b in backends:
            r = ks[b]
            gflops = r["flops"] / (r["median_ms"] * 1e6)
            cells.append(f"{r['median_ms']:.3f} ms, {gflops:.0f} GFLOP/s, {r['memory_bytes'] / 2**20:.1f} MiB")
        speedups = " / ".join(f"{best['median_ms'] / ks[b]['median_ms']:.2f}x" for b in backends)
        mem = f", {best['peak_growth_bytes'] / 2**20:.0f} MiB" if mode == "train" else ""
        lines.append(f"| {label} ({ks[backends[0]]['flops'] / 1e9:.3f} GFLOP) | " + " | ".join(cells) +
                     f" | {best['median_ms']:.3f} ms ({setting}){mem} | {speedups} |")
        if "onednn" in ks:
            sp = best["median_ms"] / ks["onednn"]["median_ms"]
            if mode == "train":
                goal = 3.0 if model == "additive" else 2.0
                targets.append((f"training step, {model}: >= {goal:g}x faster than PyTorch", sp >= goal, f"{sp:.2f}x"))
                tmem = min(t["peak_growth_bytes"] for t in ts)
                kmem = ks["onednn"]["memory_bytes"]
                targets.append((f"peak training memory, {model}: no more than PyTorch's", kmem <= tmem,
                                f"{kmem / 2**20:.1f} MiB vs {tmem / 2**20:.1f} MiB"))
            if mode == "infer_b1":
                targets.append((f"inference B=1, {model}: >= 3x faster than PyTorch", sp >= 3.0, f"{sp:.2f}x"))
    lines.append("")
    lines.append("PyTorch settings measured (median ms):")
    lines.append("")
    for mode, label in modes:
        row = ", ".join(f"{t['threads']} thr{' tcmalloc' if t['tcmalloc'] else ''}: {t['median_ms']:.3f}"
                        for t in torch if t["mode"] == mode)
        lines.append(f"- {label}: {row}")
    lines.append("")
    prof = os.path.join(out_dir, f"profile_{model}.txt")
    if os.path.exists(prof):
        lines += ["Where the oneDNN training step's time goes (`kiln bench --profile`, top nodes, ms per call):", "", "```"]
        lines += [l.rstrip() for l in open(prof) if l.startswith("    ")]
        lines += ["```", ""]
lines += ["## Targets (oneDNN backend)", "", "| target | met | measured |", "|---|---|---|"]
for what, met, measured in targets:
    lines.append(f"| {what} | {'yes' if met else 'no'} | {measured} |")
notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
if os.path.exists(notes):
    lines += ["", open(notes).read().rstrip()]
print("\n".join(lines))
