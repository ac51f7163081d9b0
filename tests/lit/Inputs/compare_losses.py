"""compare_losses.py A B TOL: two loss logs (`step loss` per line, as kiln
train --loss-log writes them) have the same steps and losses equal within
relative TOL; prints the largest relative difference."""
import sys

def read(path):
    with open(path) as f:
        return [(int(s), float(l)) for s, l in (line.split() for line in f if line.strip())]

a, b, tol = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3])
if [s for s, _ in a] != [s for s, _ in b]:
    sys.exit(f"the logs have different steps: {len(a)} and {len(b)} lines")
worst = max(abs(x - y) / max(abs(x), 1e-30) for (_, x), (_, y) in zip(a, b))
print(f"{len(a)} steps, largest relative difference {worst:.2e}")
if worst > tol:
    sys.exit(f"losses differ by {worst:.2e} relative, more than {tol}")
