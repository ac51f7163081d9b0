"""Checks a page of `kiln train --report` / `kiln report` against what the
run printed and logged, by reading the plotted points back:

  * the page is self-contained: no script, link, image, frame, style import,
    url(...) or http(s) address, no src= or href= at all;
  * the raw step-loss polyline has one point per step of --loss-log (each
    step once, none missing or extra) at that step's loss. Points are
    written to 2 decimals of a pixel, so a point may be 0.005 px off; mapped
    back through the plot's data-x/data-y ("d0 d1 p0 p1"), that is the
    tolerance in steps and in loss;
  * the smoothed polyline is the centred moving average (data-window
    points) of the --loss-log losses, within the same tolerance;
  * with --epochs E --batches B: dashed epoch boundaries exactly between
    steps k*B and k*B+1 for k = 1..E-1;
  * with --metrics FILE: its step records (each step once) hold the very
    f32 losses --loss-log prints (formatted alike, 9 significant digits);
  * with --train-output FILE (kiln train's standard output): the per-epoch
    points (train loss, validation loss, accuracy, macro-F1) are the
    numbers train printed (4 decimals) within half their last digit plus
    the pixel rounding, and the confusion matrix counts every validation
    example once with the accuracy printed for the epoch it is of.

Prints what it checked; exits 1 with the problems found.

usage: check_report.py PAGE --loss-log LOG [--metrics JSONL] [--train-output OUT] [--epochs E --batches B]"""
import argparse
import json
import re
import struct
import sys
from html.parser import HTMLParser

ap = argparse.ArgumentParser()
ap.add_argument("page")
ap.add_argument("--loss-log", required=True)
ap.add_argument("--metrics")
ap.add_argument("--train-output")
ap.add_argument("--epochs", type=int)
ap.add_argument("--batches", type=int)
args = ap.parse_args()

problems = []
page = open(args.page, encoding="utf-8").read()
PIXEL = 0.005  # half the last written digit of a coordinate

# --- self-contained ---------------------------------------------------------
forbidden = {
    "<script": "a script", "<link": "a link element", "<img": "an image", "<iframe": "a frame",
    "<object": "an object", "<embed": "an embed", "@import": "a style import", "url(": "a url(...)",
    "http:": "an http address", "https:": "an https address", " src=": "a src attribute",
    " href=": "an href attribute", "xlink:": "an xlink attribute",
}
for needle, what in forbidden.items():
    if needle in page.lower():
        problems.append(f"the page has {what} ({needle!r})")
print("self-contained: no script, link, image, import, url() or address" if not problems else "NOT self-contained")


# --- the page's plots ---------------------------------------------------------
class Plot(HTMLParser):
    def __init__(self):
        super().__init__()
        self.loss = None          # the data-* of the step-loss group
        self.raw, self.smooth = [], []
        self.boundaries = {}      # svg number -> pixel x of each epoch boundary in it
        self.svgs = 0
        self.loss_svg = None      # the svg of the step-loss plot
        self.series = {}          # name -> (mapping attrs, [(px, py)])
        self.cells = []
        self.stack = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class", "")
        self.stack.append((tag, a))
        if tag == "svg":
            self.svgs += 1
        if tag == "g" and cls == "loss":
            self.loss = a
            self.loss_svg = self.svgs
        elif tag == "g" and cls == "series":
            self.series[a["data-series"]] = (a, [])
        elif tag == "g" and cls == "cell":
            self.cells.append((int(a["data-true"]), int(a["data-predicted"]), int(a["data-count"])))
        elif tag == "polyline" and cls in ("raw", "smooth"):
            pts = [tuple(map(float, p.split(","))) for p in a["points"].split()]
            (self.raw if cls == "raw" else self.smooth).append(pts)
        elif tag == "line" and cls == "epoch-boundary":
            self.boundaries.setdefault(self.svgs, []).append(float(a["x1"]))
        elif tag == "circle":
            for t, ga in reversed(self.stack[:-1]):
                if t == "g" and ga.get("class") == "series":
                    self.series[ga["data-series"]][1].append((float(a["cx"]), float(a["cy"])))
                    break

    def handle_endtag(self, tag):
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break


p = Plot()
p.feed(page)


def mapping(attr):
    d0, d1, p0, p1 = map(float, attr.split())
    return (lambda px: d0 + (px - p0) * (d1 - d0) / (p1 - p0)), abs((d1 - d0) / (p1 - p0)) * PIXEL


log = []
for line in open(args.loss_log):
    if line.strip():
        step, loss = line.split()
        log.append((int(step), loss))
steps = [s for s, _ in log]
if len(set(steps)) != len(steps):
    problems.append("the loss log has a step twice")
losses = {s: float(l) for s, l in log}

if p.loss is None:
    problems.append("no step-loss plot (g.loss) on the page")
else:
    to_step, step_tol = mapping(p.loss["data-x"])
    to_loss, loss_tol = mapping(p.loss["data-y"])
    if p.loss.get("data-thinned") != "false":
        problems.append("the step-loss line is thinned; this check needs every point")
    plotted = {}
    for run in p.raw:
        for px, py in run:
            x = to_step(px)
            s = round(x)
            if abs(x - s) > step_tol:
                problems.append(f"a raw point at x={px} is step {x}, not a whole step")
            if s in plotted:
                problems.append(f"step {s} is plotted twice")
            plotted[s] = to_loss(py)
    missing = sorted(set(steps) - set(plotted))
    extra = sorted(set(plotted) - set(steps))
    if missing:
        problems.append(f"steps of the loss log not plotted: {missing[:10]}")
    if extra:
        problems.append(f"steps plotted that the loss log lacks: {extra[:10]}")
    worst = max((abs(plotted[s] - losses[s]) for s in plotted if s in losses), default=0)
    if worst > loss_tol:
        bad = [s for s in plotted if s in losses and abs(plotted[s] - losses[s]) > loss_tol]
        problems.append(f"plotted losses differ from the loss log by up to {worst:.3g} (tolerance {loss_tol:.3g}), "
                        f"at steps {bad[:10]}")
    print(f"raw loss: {len(plotted)} points, one per step of the loss log, each within {loss_tol:.1e} of its loss")

    # The smoothed line: the centred moving average over each run of steps.
    window = int(p.loss["data-window"])
    half = window // 2
    smoothed = {}
    for run in p.smooth:
        for px, py in run:
            smoothed[round(to_step(px))] = to_loss(py)
    runs, current = [], []
    for s in steps:
        if current and s != current[-1] + 1:
            runs.append(current)
            current = []
        current.append(s)
    if current:
        runs.append(current)
    worst = 0
    for run in runs:
        for i, s in enumerate(run):
            part = run[max(0, i - half): i + half + 1]
            mean = sum(losses[t] for t in part) / len(part)
            if s not in smoothed:
                problems.append(f"step {s} has no smoothed point")
                continue
            worst = max(worst, abs(smoothed[s] - mean))
    # The loss log's 9 digits against the f32 the page averaged: 1e-8 relative.
    if worst > loss_tol + 1e-7:
        problems.append(f"the smoothed line is off the moving average of {window} by {worst:.3g}")
    print(f"smoothed: moving average of {window} steps, within {loss_tol:.1e}")

    if args.epochs:
        want = [k * args.batches + 0.5 for k in range(1, args.epochs)]
        got = sorted(to_step(x) for x in p.boundaries.get(p.loss_svg, []))
        if len(got) != len(want) or any(abs(g - w) > step_tol for g, w in zip(got, want)):
            problems.append(f"epoch boundaries at steps {got}, expected {want}")
        print(f"epoch boundaries: {len(got)}, between epochs at steps {' '.join(f'{g:.1f}' for g in got)}")


# --- the metrics log's step records -------------------------------------------
def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


if args.metrics:
    records = [json.loads(l) for l in open(args.metrics) if l.strip()]
    step_records = [r for r in records if r["kind"] == "step"]
    if [r["step"] for r in step_records] != steps:
        problems.append("the metrics log's step records are not the loss log's steps, each once, in order")
    text = dict(log)
    differ = [r["step"] for r in step_records
              if r["step"] in text and "%.9g" % f32(r["loss"]) != text[r["step"]]]
    if differ:
        problems.append(f"metrics log losses differ from the loss log at steps {differ[:10]}")
    print(f"metrics log: {len(step_records)} step records, losses equal to the loss log's")

# --- per-epoch points and the confusion matrix against train's output ------------
if args.train_output:
    out = open(args.train_output).read()
    printed = [tuple(map(float, m)) for m in re.findall(
        r"^epoch (\d+)/\d+: train loss ([0-9.]+) acc [0-9.]+ \| valid loss ([0-9.]+) acc ([0-9.]+) macro-F1 ([0-9.]+)",
        out, re.M)]
    valid_n = int(re.search(r"\| valid (\d+) \|", out).group(1))
    names = {"train loss": 1, "validation loss": 2, "accuracy": 3, "macro-F1": 4}
    for name, column in names.items():
        if name not in p.series:
            problems.append(f"no per-epoch series '{name}'")
            continue
        attrs, points = p.series[name]
        to_epoch, _ = mapping(attrs["data-x"])
        to_value, tol = mapping(attrs["data-y"])
        got = [(round(to_epoch(x)), to_value(y)) for x, y in points]
        want = [(int(e[0]), e[column]) for e in printed]
        if [e for e, _ in got] != [e for e, _ in want]:
            problems.append(f"'{name}' is plotted at epochs {[e for e, _ in got]}, train printed {[e for e, _ in want]}")
        for (e, g), (_, w) in zip(got, want):
            if abs(g - w) > 0.00005 + tol:
                problems.append(f"'{name}' of epoch {e} is plotted at {g:.6f}, train printed {w:.4f}")
    total = sum(c for _, _, c in p.cells)
    right = sum(c for t, q, c in p.cells if t == q)
    if total != valid_n:
        problems.append(f"the confusion matrix counts {total} examples, the run had {valid_n} for validation")
    else:
        # The matrix is the selected epoch's, or the last one's; its title says which.
        shown = int(re.search(r"Validation confusion matrix, epoch (\d+)", page).group(1))
        accuracy = {int(e[0]): e[3] for e in printed}.get(shown)
        if accuracy is None or abs(right / total - accuracy) > 0.00005:
            problems.append(f"the confusion matrix's accuracy {right / total:.4f} is not epoch {shown}'s {accuracy}")
    print(f"per epoch: {len(printed)} epochs as train printed them; confusion matrix: {total} examples")

for problem in problems:
    print("problem:", problem)
sys.exit(1 if problems else 0)
