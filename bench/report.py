"""Turns the JSON that bench/run collects into docs/PERFORMANCE.md (printed on
stdout): per model, one table with a column per kiln backend and one for
PyTorch at its fastest setting, speedups (PyTorch time / kiln time, both
from the same run), GFLOP/s next to the FLOP count, and peak training memory;
then every PyTorch setting, the training-step profile of each backend, the
machine, the exact command, and the targets marked met or not met from the
numbers of this run.

Input files in OUT_DIR (written by bench/run):
  kiln_MODEL.json            kiln bench --backend all (all modes)
  train_MODEL_BACKEND.json   kiln bench --backend BACKEND --mode train --profile,
                             a fresh process: profile and peak RSS growth
  torch_MODEL.jsonl          one bench/torch_bench.py result per line

usage: report.py OUT_DIR --command "bench/run ..." [--seconds N] [--models "additive sdpa"]"""
import argparse
import datetime
import json
import os
import re
import platform
import subprocess

here = os.path.dirname(os.path.abspath(__file__))
p = argparse.ArgumentParser()
p.add_argument("out_dir")
p.add_argument("--command", required=True)
p.add_argument("--seconds", type=float)
p.add_argument("--models", default="additive sdpa attnpool")
p.add_argument("--load", help="/proc/loadavg's first three fields when the run started")
a = p.parse_args()

MODES = ["train", "infer", "infer_b1"]


def mib(b):
    return f"{b / 2**20:.1f} MiB"


def lscpu():
    info = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def setting(t):
    threads = f"{t['threads']} thread{'s' if t['threads'] != 1 else ''}"
    return threads + (", tcmalloc" if t["tcmalloc"] else "")


def mode_label(mode, batch, seq):
    return f"training step B={batch}, T={seq}" if mode == "train" else f"inference B={batch}, T={seq}"


def load_json(path):
    with open(path) as f:
        return json.load(f)


def load(model):
    kiln_path = os.path.join(a.out_dir, f"kiln_{model}.json")
    torch_path = os.path.join(a.out_dir, f"torch_{model}.jsonl")
    if not os.path.exists(kiln_path) or not os.path.exists(torch_path):
        return None
    kiln = load_json(kiln_path)
    with open(torch_path) as f:
        torch = [json.loads(line) for line in f if line.strip()]
    train = {}
    for b in kiln["backends"]:
        path = os.path.join(a.out_dir, f"train_{model}_{b}.json")
        if os.path.exists(path):
            train[b] = load_json(path)
    return kiln, torch, train


cpu = lscpu()
models = [m for m in a.models.split() if load(m)]
data = {m: load(m) for m in models}
backends = []
for m in models:
    for b in data[m][0]["backends"]:
        if b not in backends:
            backends.append(b)
torch_version = next((t.get("torch", "?") for m in models for t in data[m][1]), "?")
tcmalloc_used = any(t["tcmalloc"] for m in models for t in data[m][1])

lines = ["# kiln performance", ""]
lines += [
    "kiln against PyTorch eager on the example models, step by step, in one run of `bench/run` "
    "(kiln: `kiln bench`, PyTorch: `bench/torch_bench.py` over the modules of `tests/parity/models.py`). "
    "Every time is the median over the repeats; speedup = PyTorch time / kiln time, both measured in the "
    "same run, so above 1 means kiln is faster. PyTorch is timed with 1 and 2 threads"
    + (", each with glibc malloc and with tcmalloc preloaded" if tcmalloc_used else " (tcmalloc not found)")
    + ", and compared at its fastest setting (named in each cell). Random token ids, no padding. "
    "FLOPs are counted from kiln's graph by the rule in `passes/flops.h` (2·M·N·K per matmul, 1 per element "
    "for elementwise ops and reductions, a few for exp/tanh/softmax); GFLOP/s = that count / median time, "
    "and PyTorch's GFLOP/s use the same count.",
    "",
    "Memory: *planned* is what `kiln bench` reports (parameters + Adam state + the backend's workspace, "
    "i.e. its arena; the reference backend reports no workspace). *RSS* is the growth of the process's peak "
    "resident memory from before the model is built to the end of warm-up and timed steps, measured the same "
    "way for kiln (a fresh `kiln bench --mode train` per backend) and PyTorch (a fresh process per setting): "
    "the kernel's high-water mark is reset through `/proc/self/clear_refs` and read back as `VmHWM` "
    "(PyTorch 1.13 has no CPU allocator statistics). The memory target compares RSS with RSS.",
    "",
]

# targets[(description)] = {backend: (met, text)}
targets = {}
# The training-step targets of issue 10 (compiler passes and fusion).
# Issue 11's targets: training step B=64, T=128 against PyTorch's fastest
# setting, inference at B=1 4x for the three seed models, llvm at least as
# fast as onednn on every row, and the llvm training graph's compile cold
# (the `--backend all` run, in an empty cache) <= 1 s and warm (the profile
# run after it, from the cache) <= 30 ms.
TRAIN_TARGETS = {"additive": 4, "attnpool": 4, "sdpa": 3}
B1_TARGETS = {"additive": 4, "attnpool": 4, "sdpa": 4}


def arena_mib(path):
    """The planned arena of `kiln compile --emit=memory` output, in MiB, and
    whether any activation kept for the backward pass is [B,T,T]."""
    if not os.path.exists(path):
        return None, None
    text = open(path).read()
    m = re.search(r"arena ([0-9.]+) (KiB|MiB|GiB|TiB)", text)
    scale = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "TiB": 1024 * 1024}[m.group(2)]
    kept = text.split("kept for the backward pass", 1)[1] if "kept for the backward pass" in text else ""
    return float(m.group(1)) * scale, "[B,T,T]" in kept


def target(desc, backend, met, text):
    targets.setdefault(desc, {})[backend] = (met, text)


for model in models:
    kiln, torch, train = data[model]
    batch, seq = kiln["batch"], kiln["seq"]
    example = f"classifier_{model}.kiln" if model in ("additive", "sdpa", "attnpool") else f"{model}.kiln"
    lines += [f"## {example}", ""]
    header = "| | FLOPs | " + " | ".join(f"kiln {b}" for b in kiln["backends"]) + \
             f" | PyTorch {torch_version} (fastest setting) | " + \
             " | ".join(f"speedup {b}" for b in kiln["backends"]) + " |"
    lines += [header, "|---" * (2 * len(kiln["backends"]) + 3) + "|"]
    for mode in MODES:
        ks = {r["backend"]: r for r in kiln["results"] if r["what"] == mode}
        ts = [t for t in torch if t["mode"] == mode]
        if not ks or not ts:
            continue
        flops = next(iter(ks.values()))["flops"]
        best = min(ts, key=lambda t: t["median_ms"])
        label = mode_label(mode, 1 if mode == "infer_b1" else batch, seq)
        cells = [f"{ks[b]['median_ms']:.3f} ms, {flops / (ks[b]['median_ms'] * 1e6):.1f} GFLOP/s"
                 if b in ks else "-" for b in kiln["backends"]]
        speedups = [f"{best['median_ms'] / ks[b]['median_ms']:.2f}x" if b in ks else "-" for b in kiln["backends"]]
        torch_cell = (f"{best['median_ms']:.3f} ms, {flops / (best['median_ms'] * 1e6):.1f} GFLOP/s "
                      f"({setting(best)})")
        lines.append(f"| {label} | {flops / 1e9:.3f} GFLOP | " + " | ".join(cells) + f" | {torch_cell} | " +
                     " | ".join(speedups) + " |")
        for b, r in ks.items():
            sp = best["median_ms"] / r["median_ms"]
            if mode == "train" and model in TRAIN_TARGETS:
                want = TRAIN_TARGETS[model]
                target(f"training step, {model}: >= {want:g}x faster than PyTorch (its fastest setting)", b,
                       sp >= want, f"{sp:.2f}x")
            if mode == "infer_b1" and model in B1_TARGETS:
                want = B1_TARGETS[model]
                target(f"inference B=1, {model}: >= {want:g}x faster than PyTorch", b, sp >= want, f"{sp:.2f}x")
        if "llvm" in ks and "onednn" in ks:
            ratio = ks["onednn"]["median_ms"] / ks["llvm"]["median_ms"]
            target(f"{label}, {model}: llvm at least as fast as onednn", "llvm", ratio >= 1,
                   f"{ratio:.2f}x onednn's speed")
        if mode == "train" and "llvm" in ks:
            cold = ks["llvm"].get("compile_ms", -1)
            warm = next((r.get("compile_ms", -1) for r in train.get("llvm", {}).get("results", []) if r["what"] == "train"), -1)
            if cold >= 0:
                target(f"llvm compile of the training step, {model}: cold <= 1 s", "llvm", cold <= 1000, f"{cold:.0f} ms")
            if warm >= 0:
                target(f"llvm compile of the training step, {model}: warm (cached) <= 30 ms", "llvm", warm <= 30,
                       f"{warm:.1f} ms")
    # Peak training memory: planned and RSS for kiln, RSS for PyTorch (its
    # smallest over the settings, the stricter comparison for kiln).
    ks = {r["backend"]: r for r in kiln["results"] if r["what"] == "train"}
    ts = [t for t in torch if t["mode"] == "train"]
    if ks and ts:
        low = min(ts, key=lambda t: t["peak_growth_bytes"])
        cells, ratios = [], []
        for b in kiln["backends"]:
            r = ks.get(b)
            if not r:
                cells.append("-")
                ratios.append("-")
                continue
            planned = mib(r["memory_bytes"]) + " planned" + ("" if r["workspace_bytes"] else " (no workspace reported)")
            rss = train.get(b, {}).get("peak_rss_growth_bytes", -1)
            cells.append(planned + (f", RSS +{mib(rss)}" if rss >= 0 else ""))
            mine = rss if rss >= 0 else r["memory_bytes"]
            ratios.append(f"{mine / low['peak_growth_bytes']:.2f}x PyTorch's")
            target(f"peak training memory, {model}: <= PyTorch's", b, mine <= low["peak_growth_bytes"],
                   f"{mib(mine)} vs {mib(low['peak_growth_bytes'])}" + ("" if rss >= 0 else " (planned)"))
        lines.append("| peak training memory | | " + " | ".join(cells) +
                     f" | RSS +{mib(low['peak_growth_bytes'])} ({setting(low)}) | " + " | ".join(ratios) + " |")
    # Fusion on against off (onednn, same run) and memory against T.
    nofuse_path = os.path.join(a.out_dir, f"nofuse_{model}.json")
    fused = next((r for r in kiln["results"] if r["what"] == "train" and r["backend"] == "onednn"), None)
    if os.path.exists(nofuse_path) and fused and ts:
        nf = next(r for r in load_json(nofuse_path)["results"] if r["what"] == "train")
        best = min(ts, key=lambda t: t["median_ms"])
        lines.append(f"| training step, onednn, `--disable-pass=fuse-attention` | | {nf['median_ms']:.3f} ms, "
                     f"workspace {mib(nf['workspace_bytes'])} (fused: {fused['median_ms']:.3f} ms, workspace "
                     f"{mib(fused['workspace_bytes'])}; fusion gains {nf['median_ms'] / fused['median_ms']:.2f}x) | | "
                     f"| {best['median_ms'] / nf['median_ms']:.2f}x | |")
    a128, tt128 = arena_mib(os.path.join(a.out_dir, f"memory_{model}_T128.txt"))
    a2048, tt2048 = arena_mib(os.path.join(a.out_dir, f"memory_{model}_T2048.txt"))
    if a128 and a2048:
        growth = a2048 / a128
        lines.append(f"| training arena, T=128 -> T=2048 (16x longer) | | {a128:.1f} MiB -> {a2048:.1f} MiB: "
                     f"{growth:.1f}x; a [B,T,T] activation kept: {'yes' if tt128 or tt2048 else 'none'} | | | | |")
        target(f"training arena, {model}: T=2048 at most 20x T=128, no [B,T,T] kept activation", "onednn",
               growth <= 20 and not (tt128 or tt2048), f"{growth:.1f}x")
    lines += ["", "PyTorch, every setting (median ms; for the training step also the peak RSS growth):", ""]
    settings = []
    for t in torch:
        key = (t["threads"], t["tcmalloc"])
        if key not in settings:
            settings.append(key)
    settings.sort()
    lines += ["| | " + " | ".join(setting({"threads": th, "tcmalloc": tc}) for th, tc in settings) + " |",
              "|---" * (len(settings) + 1) + "|"]
    for mode in MODES:
        row = []
        for th, tc in settings:
            t = next((t for t in torch if t["mode"] == mode and t["threads"] == th and t["tcmalloc"] == tc), None)
            if t is None:
                row.append("-")
            elif mode == "train":
                row.append(f"{t['median_ms']:.3f} ms, +{mib(t['peak_growth_bytes'])}")
            else:
                row.append(f"{t['median_ms']:.3f} ms")
        lines.append(f"| {mode_label(mode, 1 if mode == 'infer_b1' else batch, seq)} | " + " | ".join(row) + " |")
    lines.append("")
    for b in kiln["backends"]:
        if b not in train:
            continue
        tr = next((r for r in train[b]["results"] if r["what"] == "train"), None)
        if tr is None:
            continue
        lines.append(f"Training step on `{b}`, by node (`kiln bench --backend {b} --mode train --profile`; "
                     "ms per step, share of the profiled time, top 15):")
        lines.append("")
        if not tr.get("profile"):
            lines += ["    (no profile from this backend)", ""]
            continue
        lines.append("```")
        for n in tr["profile"]:
            lines.append(f"{n['ms_per_call']:8.3f} ms {n['percent']:5.1f}%  {n['label']:<34} {n['type']:<16} {n['loc']}")
        lines += ["```", ""]

lines += ["## Targets", "",
          "Computed from the numbers above; speedups against PyTorch's fastest setting in this run "
          "(thread count and allocator), memory as peak RSS growth against PyTorch's smallest.", ""]
lines += ["| target | " + " | ".join(f"kiln {b}" for b in backends) + " |", "|---" * (len(backends) + 1) + "|"]
for desc, per in targets.items():
    cells = []
    for b in backends:
        if b in per:
            met, text = per[b]
            cells.append(f"{'met' if met else 'not met'} ({text})")
        else:
            cells.append("-")
    lines.append(f"| {desc} | " + " | ".join(cells) + " |")

lines += ["", "## How this was measured", ""]
when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
cores = cpu.get("CPU(s)", str(os.cpu_count()))
topo = ""
if "Core(s) per socket" in cpu and "Thread(s) per core" in cpu:
    topo = f" ({cpu.get('Socket(s)', '?')} socket(s) x {cpu['Core(s) per socket']} core(s) x " \
           f"{cpu['Thread(s) per core']} thread(s))"
lines += [
    f"- command: `{a.command}`" + (f" (took {a.seconds:.0f} s)" if a.seconds is not None else ""),
    f"- date: {when}",
    f"- machine: {cpu.get('Model name', platform.processor() or '?')}, {cores} CPUs{topo}, "
    f"Linux {platform.release()}",
    f"- load average when the run started: {a.load} (on two cores another busy process shows most in the "
    "2-thread figures: an OpenMP team waits for its slowest thread)" if a.load else "- load average: not recorded",
    f"- kiln backends: {', '.join(backends)}; PyTorch {torch_version} (Debian python3-torch), eager mode",
    f"- shapes: B={data[models[0]][0]['batch']}, T={data[models[0]][0]['seq']}, "
    f"vocab={data[models[0]][0]['vocab']}; kiln {data[models[0]][0]['repeat']} timed runs after "
    f"{data[models[0]][0]['warmup']} warm-up (5x the runs at B=1), the same for PyTorch"
    if models else "- no results",
]
notes = os.path.join(here, "notes.md")
if os.path.exists(notes):
    with open(notes) as f:
        lines += ["", f.read().rstrip(), "",
                  "(This section is bench/notes.md, written by hand from earlier runs; bench/run does not "
                  "regenerate it.)"]
print("\n".join(lines))
