"""SIGKILL `kiln train` at random moments while it checkpoints after every
step (a 23 MB checkpoint, so most of the time is spent writing it), then
check that the checkpoint on disk always loads (`kiln eval` succeeds), that
training progress never goes backwards, and that the next run removes the
partial temp file the killed writer left. Seeded, so it reproduces.

usage: kill_during_save.py KILN MODEL DATA WORKDIR"""
import glob
import os
import random
import re
import signal
import subprocess
import sys
import time

kiln, model, data, work = sys.argv[1:5]
os.makedirs(work, exist_ok=True)
ckpt = os.path.join(work, "run.ckpt")
for f in glob.glob(ckpt + "*"):
    os.remove(f)
common = ["--data", data, "--epochs", "1000"]
size = ["--param", "vocab=60000", "--param", "embed=32", "--param", "hidden=8", "--batch", "8", "--seed", "1"]
subprocess.run([kiln, "train", model] + common + size + ["--max-steps", "1", "--out", ckpt], check=True,
               stdout=subprocess.DEVNULL)

def step_of(path):
    out = subprocess.run([kiln, "eval", "--ckpt", path, "--data", data], capture_output=True, text=True)
    if out.returncode != 0:
        print("checkpoint does not load:", out.stderr.strip())
        return None
    meta = open(path, "rb").read(1 << 20)
    return int(re.search(rb'"step":"(\d+)"', meta).group(1))

rng = random.Random(11)
failures, mid_write, previous, trials = 0, 0, step_of(ckpt), 0
# 8 kills, and more (up to 20) until one has landed inside a write: on a much
# faster or slower machine the random moments may miss the writes at first.
while trials < 8 or (mid_write == 0 and trials < 20):
    trial, trials = trials, trials + 1
    p = subprocess.Popen([kiln, "train", model] + common + ["--resume", ckpt, "--save-every", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.8, 2.5))
    p.send_signal(signal.SIGKILL)
    p.wait()
    temps = glob.glob(ckpt + ".tmp.*")
    mid_write += bool(temps)
    step = step_of(ckpt)
    if step is None or previous is None or step < previous:
        print(f"trial {trial}: checkpoint step {step} after {previous}")
        failures += 1
    previous = step
# A new writer clears the temp files of dead ones.
subprocess.run([kiln, "train", model] + common + ["--resume", ckpt, "--max-steps", str(previous + 1)],
               check=True, stdout=subprocess.DEVNULL)
left = glob.glob(ckpt + ".tmp.*")
print(f"{trials} kills, {mid_write} during a checkpoint write, {failures} unloadable or regressed, "
      f"{len(left)} temp files left after the next run")
ok = failures == 0 and mid_write > 0 and not left
print("PASSED" if ok else "FAILED")
sys.exit(0 if ok else 1)
