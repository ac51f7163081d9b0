"""Summarises cross_init.py lines: per cell mean, sd over seeds, and the
kiln-init minus torch-init difference with its standard error and a
Welch t statistic; also the trainer effect (same init, kiln vs torch).

usage: summarize.py FILE...   (lines as cross_init.py prints them)"""
import re
import sys
from collections import defaultdict

import numpy as np

cells = defaultdict(dict)
for path in sys.argv[1:]:
    for line in open(path):
        m = re.match(r"(\w+) seed (\d+): (.*?)( \| .*)?$", line.strip())
        if not m:
            continue
        for name, v in re.findall(r"([\w-]+\+[\w]+) ([0-9.]+)", m.group(3)):
            cells[name][int(m.group(2))] = float(v)
for name, d in cells.items():
    v = np.array(list(d.values()))
    print(f"{name:<18} n={len(v):2d} mean {v.mean():.4f} sd {v.std(ddof=1):.4f} min {v.min():.4f} max {v.max():.4f}")
a, b = np.array(list(cells["kiln-init+kiln"].values())), np.array(list(cells["torch-init+kiln"].values()))
se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
print(f"init effect (kiln trainer): kiln-init - torch-init = {a.mean() - b.mean():+.4f} +- {se:.4f} (t = {(a.mean() - b.mean()) / se:+.2f})")
for init in ("kiln-init", "torch-init"):
    k, t = cells.get(f"{init}+kiln", {}), cells.get(f"{init}+torch", {})
    common = sorted(set(k) & set(t))
    if common:
        d = np.array([k[s] - t[s] for s in common])
        print(f"trainer effect from {init} (paired, n={len(d)}): kiln - torch mean {d.mean():+.4f}, max |diff| {np.abs(d).max():.4f}")
# the comparison the issue made: means over the first few seeds
for n in (3, 4):
    for start in range(0, 8 - n + 1, n):
        s = range(start, start + n)
        if all(x in cells["kiln-init+kiln"] and x in cells.get("torch-init+torch", {}) for x in s):
            ka = np.mean([cells["kiln-init+kiln"][x] for x in s])
            ta = np.mean([cells["torch-init+torch"][x] for x in s])
            print(f"seeds {start}-{start + n - 1}: kiln {ka:.4f} torch {ta:.4f} gap {ka - ta:+.4f}")
