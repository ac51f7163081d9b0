"""kiln's initial parameters (a `kiln train --epochs 0` checkpoint) against
PyTorch's default init of tests/parity/models.py's same model: per
parameter mean, std, min, max, and a two-sample Kolmogorov-Smirnov
statistic (with its 1% critical value).

usage: init_stats.py INIT_CKPT [--seed S]"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import step_compare as sc  # noqa: E402
import st  # noqa: E402
import torch_train as tt  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("ckpt")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
k = st.load(a.ckpt)
meta = sc.read_meta(a.ckpt)
vocab, classes = len(json.loads(meta["vocab"])), len(json.loads(meta["labels"]))
torch.manual_seed(a.seed)
m, _ = tt.build_model("sdpa", vocab, classes)
print(f"{'param':<24}{'n':>8} | {'kiln mean/std/min/max':^40} | {'torch mean/std/min/max':^40} | KS (1% crit)")
for n, p in m.named_parameters():
    x, y = np.sort(np.array(k[n]).ravel().astype(np.float64)), np.sort(p.detach().numpy().ravel().astype(np.float64))
    grid = np.concatenate([x, y])
    ks = np.max(np.abs(np.searchsorted(x, grid, "right") / len(x) - np.searchsorted(y, grid, "right") / len(y)))
    crit = 1.63 * np.sqrt(2 / len(x))
    f = lambda v: f"{v.mean():+.4f} {v.std():.4f} {v.min():+.4f} {v.max():+.4f}"
    print(f"{n:<24}{len(x):8d} | {f(x):^40} | {f(y):^40} | {ks:.4f} ({crit:.4f})")
