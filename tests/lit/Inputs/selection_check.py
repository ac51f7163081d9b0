"""selection_check.py KILN EXAMPLES WORK [BACKEND]: model selection and
early stopping of `kiln train`, checked against runs without them.

Run A trains examples/textcat.kiln (small sizes) on make_data.py's data with
--select-by accuracy --patience 2 --plateau-decay 0.5 for up to 12 epochs.
From A's own per-epoch validation accuracies the script works out which
epoch must be selected (the first best: ties keep the earlier epoch) and
when the run must stop, and checks that A says so. Then:
  - B, the same recipe without selection for exactly that many epochs
    (same seed, so the same split and batches), must end with parameters
    bitwise equal to A's model tensors;
  - A's `last.*` tensors are its last step's parameters: a run C without
    selection cannot give those (its learning rate never decays), so they
    are checked against a resumed copy of A instead:
  - D is A stopped with --max-steps in the middle of an epoch after the best
    one (the selected parameters differ from the last step's there, the
    plateau decay has applied, and the patience count is running), then
    resumed: its loss log and every tensor of its final checkpoint must
    equal A's exactly;
  - resuming A's finished, early-stopped checkpoint is refused.
Prints one `ok` line per check; exits non-zero on the first failure."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "parity"))
import numpy as np  # noqa: E402
import st  # noqa: E402

kiln, examples, work = sys.argv[1:4]
backend = sys.argv[4] if len(sys.argv) > 4 else "onednn"
os.makedirs(work, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
data = os.path.join(work, "data.tsv")
subprocess.run([sys.executable, os.path.join(here, "make_data.py"), data, "300", "7"], check=True)
model = os.path.join(examples, "textcat.kiln")
common = ["--data", data, "--param", "buckets=500", "--param", "embed=8", "--batch", "16", "--lr", "0.001",
          "--seed", "3", "--backend", backend]
selection = ["--select-by", "accuracy", "--patience", "2", "--plateau-decay", "0.5"]
EPOCHS = 12


def train(name, *extra, expect_fail=False):
    log = os.path.join(work, name + ".log")
    if os.path.exists(log) and "--resume" not in extra:  # a resumed run appends to its log
        os.remove(log)
    args = [kiln, "train", model, "--out", os.path.join(work, name + ".ckpt"), "--loss-log", log, *extra]
    r = subprocess.run(args, capture_output=True, text=True)
    if (r.returncode != 0) != expect_fail:
        sys.exit(f"{name}: kiln train exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r.stdout + r.stderr


def fail(msg):
    sys.exit("FAILED: " + msg)


out_a = train("a", *common, *selection, "--epochs", str(EPOCHS))
accs = [float(m) for m in re.findall(r"^epoch \d+/\d+: .*valid loss \S+ acc (\S+)", out_a, re.M)]
if not accs:
    fail("no per-epoch validation lines in\n" + out_a)
best, since, stop_at, decays = 0, 0, None, []
for epoch, acc in enumerate(accs, 1):
    if best == 0 or acc > accs[best - 1]:
        best, since = epoch, 0
    else:
        since += 1
        decays.append(epoch)  # --plateau-patience 1: every epoch without a better score
    if since >= 2 and epoch < EPOCHS:
        stop_at = epoch
        break
if stop_at is None or stop_at != len(accs):
    fail(f"expected the run to stop early after the last printed epoch; accuracies {accs}, stop {stop_at}")
if "stopping early: no better validation accuracy in 2 epochs" not in out_a:
    fail("A does not say it stopped early:\n" + out_a)
if f"model: epoch {best} of {stop_at} (validation accuracy" not in out_a:
    fail(f"A should select epoch {best} of {stop_at}:\n" + out_a)
lr_lines = re.findall(r"^epoch (\d+)/\d+: .*\| lr x(\S+)", out_a, re.M)
if [int(e) for e, _ in lr_lines] != decays or [float(s) for _, s in lr_lines] != [0.5 ** (i + 1) for i in range(len(decays))]:
    fail(f"plateau decays {lr_lines}, expected after epochs {decays}")
if best < 2:
    fail(f"the best epoch is the first ({accs}), so the selection is not exercised; lower --lr or change the data seed")
if any(e <= best for e in decays):
    fail(f"the learning rate decayed before the best epoch {best} (after {decays}), so run B below cannot match; "
         "change the data seed")
print(f"ok: accuracies {accs}: selected epoch {best}, stopped after epoch {stop_at}, lr decayed after {decays}")

a = st.load(os.path.join(work, "a.ckpt"))
train("b", *common, "--select-by", "none", "--epochs", str(best))
b = st.load(os.path.join(work, "b.ckpt"))
params = [n for n in b if not n.startswith("optimizer.")]
for n in params:
    if not np.array_equal(a[n], b[n]):
        fail(f"A's selected {n} differs from the parameters after epoch {best} of run B")
last = [n for n in a if n.startswith("last.")]
if best < stop_at and sorted(last) != sorted("last." + n for n in params):
    fail(f"A's checkpoint should hold every parameter's last step as last.*: {sorted(last)}")
print(f"ok: A's model tensors equal run B's after {best} epochs ({len(params)} tensors, bitwise)")

# D: stop in the middle of the first epoch after the best one, then resume.
steps = [int(line.split()[0]) for line in open(os.path.join(work, "a.log"))]
per_epoch = len(steps) // stop_at
mid = best * per_epoch + per_epoch // 2 + (per_epoch if best + 1 < stop_at else 0)
train("d", *common, *selection, "--epochs", str(EPOCHS), "--max-steps", str(mid))
out_d = train("d", "--resume", os.path.join(work, "d.ckpt"), "--data", data, "--backend", backend)
if open(os.path.join(work, "a.log")).read() != open(os.path.join(work, "d.log")).read():
    fail("the resumed run's loss log differs from the uninterrupted run's")
d = st.load(os.path.join(work, "d.ckpt"))
if sorted(a) != sorted(d) or any(not np.array_equal(a[n], d[n]) for n in a):
    fail("the resumed run's final checkpoint differs from the uninterrupted run's")
if f"model: epoch {best} of {stop_at}" not in out_d:
    fail("the resumed run selects another epoch:\n" + out_d)
print(f"ok: stopped at step {mid} and resumed: the loss log and all {len(a)} tensors equal A's")

out = train("a", "--resume", os.path.join(work, "a.ckpt"), "--data", data, "--epochs", "20", expect_fail=True)
if "stopped early after epoch" not in out:
    fail("resuming an early-stopped run should be refused:\n" + out)
print("ok: resuming the early-stopped run is refused")
