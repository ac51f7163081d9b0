"""PyTorch eager timings of the example models, for bench/run to compare with.

The models are tests/parity/models.py (the same modules the parity tests
check kiln against), at the shapes of `kiln bench`: random token batches with
no padding, B x T. A training step is zero_grad, forward, cross_entropy,
backward and an Adam step; inference runs under torch.no_grad(). Reports the
median and minimum over --repeat runs after --warmup runs, and the growth of
the process's peak resident memory (ru_maxrss) from just before the model is
built to the end, which covers parameters, gradients, Adam state and the
step's activations (PyTorch 1.13 has no CPU allocator statistics).

usage: torch_bench.py --model additive|sdpa|attnpool --mode train|infer|infer_b1
                      [--batch 64] [--seq 128] [--threads 2] [--repeat 20] [--warmup 3]
prints one JSON object."""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "parity"))
import models  # noqa: E402


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--mode", required=True, choices=["train", "infer", "infer_b1"])
p.add_argument("--batch", type=int, default=64)
p.add_argument("--seq", type=int, default=128)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--repeat", type=int, default=20)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--vocab", type=int, default=10000)
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(0)
base = rss_kib()
model = models.TextClassifier(a.model, vocab=a.vocab, embed=128, hidden=256, classes=5)
batch = 1 if a.mode == "infer_b1" else a.batch
tokens = torch.randint(2, a.vocab, (batch, a.seq))
labels = torch.randint(0, 5, (batch,))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)


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
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"model": a.model, "mode": a.mode, "threads": a.threads, "batch": batch, "seq": a.seq,
                  "median_ms": times[len(times) // 2], "min_ms": times[0],
                  "peak_growth_bytes": (peak - base) * 1024,
                  "tcmalloc": "tcmalloc" in os.environ.get("LD_PRELOAD", "")}))
