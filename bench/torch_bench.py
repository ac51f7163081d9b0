"""PyTorch eager timings of the example models, for bench/run to compare
kiln with.

The modules are those of tests/parity/models.py (the ones the parity tests
check kiln against, imported by path), sized by the `param` lines of the
model's .kiln file, at the shapes `kiln bench` uses: random token ids in
[2, vocab), B x T, no padding unless --pad (then every text but the first
gets a random length in [T/4, T], as in kiln bench).

  train     zero_grad, forward, cross_entropy, backward, Adam step (lr 1e-3)
  infer     forward under torch.no_grad() at B
  infer_b1  the same at batch 1 (5x the repeats: the runs are short)

Times are time.perf_counter() around each run; the median and minimum over
--repeat runs after --warmup runs are reported. Threads: torch.set_num_threads
(bench/run runs 1 and 2); bench/run also preloads tcmalloc in a second run.

Memory: the growth of this process's peak resident set from just before the
model is built to the end of the runs, so it covers parameters, gradients,
Adam state, activations and what the allocator keeps. PyTorch 1.13 has no
CPU allocator statistics, so it is measured from the kernel: the high-water
mark (VmHWM) is reset to the current RSS through /proc/self/clear_refs after
`import torch`, so the import's transient peak does not count, and read from
/proc/self/status at the end; where the reset is not possible the fallback
is ru_maxrss, an upper bound. One process measures one mode, so bench/run
starts a fresh process per mode. kiln bench measures its own process the
same way.

usage: torch_bench.py --model additive|sdpa|attnpool --mode train|infer|infer_b1
                      [--kiln FILE] [--batch 64] [--seq 128] [--threads 2]
                      [--repeat 20] [--warmup 3] [--pad]
prints one JSON object (one line)."""
import argparse
import json
import os
import re
import resource
import sys
import time

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "parity"))
import models  # noqa: E402


def status_bytes(field):
    """A field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak():
    """Resets VmHWM to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def kiln_params(path):
    """The numeric `param NAME = VALUE` lines of a .kiln model (ints, or
    floats such as a dropout probability)."""
    params = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*param\s+(\w+)\s*=\s*(\d+(\.\d*)?)\s*(#.*)?$", line)
            if m:
                params[m.group(1)] = float(m.group(2)) if m.group(3) else int(m.group(2))
    return params


def random_tokens(batch, seq, vocab, pad, gen):
    tokens = torch.randint(2, vocab, (batch, seq), generator=gen)
    if pad:
        for r in range(1, batch):
            n = int(torch.randint(max(1, seq // 4), seq + 1, (1,), generator=gen))
            tokens[r, n:] = 0
    return tokens


p = argparse.ArgumentParser(description="PyTorch eager timings of the kiln example models")
p.add_argument("--model", required=True, choices=["additive", "sdpa", "attnpool", "transformer", "textcnn", "bigru"])
p.add_argument("--mode", required=True, choices=["train", "infer", "infer_b1"])
p.add_argument("--kiln", help="the .kiln file whose params size the model (default examples/classifier_MODEL.kiln)")
p.add_argument("--batch", type=int, default=64)
p.add_argument("--seq", type=int, default=128)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--repeat", type=int, default=20)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--pad", action="store_true")
a = p.parse_args()

kiln_file = a.kiln or os.path.join(here, "..", "examples", f"{a.model}.kiln" if a.model in ("transformer", "textcnn", "bigru")
                                   else f"classifier_{a.model}.kiln")
hp = kiln_params(kiln_file)
torch.set_num_threads(a.threads)
torch.manual_seed(0)
gen = torch.Generator().manual_seed(1)

exact_peak = reset_peak()
base = status_bytes("VmRSS")
if a.model == "transformer":
    model = models.TransformerClassifier(vocab=hp["vocab"], embed=hp["embed"], heads=hp["heads"], classes=hp["classes"],
                                         drop=hp["drop"])
elif a.model == "bigru":
    model = models.BiGRU(vocab=hp["vocab"], embed=hp["embed"], hidden=hp["hidden"], classes=hp["classes"])
elif a.model == "textcnn":
    model = models.TextCNN(vocab=hp["vocab"], embed=hp["embed"], filters=hp["filters"], classes=hp["classes"],
                           drop=hp["drop"])
else:
    model = models.TextClassifier(a.model, vocab=hp["vocab"], embed=hp["embed"], hidden=hp["hidden"],
                                  classes=hp["classes"])
batch = 1 if a.mode == "infer_b1" else a.batch
tokens = random_tokens(batch, a.seq, hp["vocab"], a.pad, gen)
labels = torch.randint(0, hp["classes"], (batch,), generator=gen)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
if a.mode != "train":
    model.eval()


def once():
    if a.mode == "train":
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(tokens), labels)
        loss.backward()
        opt.step()
    else:
        with torch.no_grad():
            model(tokens)


repeat = a.repeat * (5 if a.mode == "infer_b1" else 1)
for _ in range(a.warmup):
    once()
times = []
for _ in range(repeat):
    t0 = time.perf_counter()
    once()
    times.append((time.perf_counter() - t0) * 1e3)
times.sort()
n = len(times)
median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
if exact_peak:
    peak = status_bytes("VmHWM")
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
print(json.dumps({"model": a.model, "mode": a.mode, "threads": torch.get_num_threads(), "batch": batch,
                  "seq": a.seq, "pad": a.pad, "median_ms": median, "min_ms": times[0],
                  "peak_growth_bytes": peak - base,
                  "memory_method": "VmHWM reset" if exact_peak else "ru_maxrss (upper bound)",
                  "tcmalloc": "tcmalloc" in os.environ.get("LD_PRELOAD", ""),
                  "torch": torch.__version__}))
