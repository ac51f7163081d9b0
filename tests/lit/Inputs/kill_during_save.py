"""SIGKILL `kiln train` at random moments while it checkpoints after every
step (a 23 MB checkpoint), then check that the checkpoint on disk always
loads (`kiln eval` succeeds), that training progress never goes backwards,
and that the next run removes the partial temp file the killed writer left.
Seeded, so the sequence of choices reproduces.

The kill moments are placed relative to what the process is observed doing,
not on the wall clock, so that the test exercises kills inside a write on a
fast machine and under a sanitizer's slowdown alike: each trial waits until
the writer's temp file (`run.ckpt.tmp.<pid>`) has come and gone twice (the
second time measures how long a write takes on this machine), then kills at
a random moment between the start of the third write and 1.2 times the
median write seen so far after it, so that most kills land inside a write
(write times vary, so not all) and the rest just after one. Kills go on
until at least KILLS have been made and KILLS / 2 of them landed inside a
write, within MAX_TRIALS; a run that never catches a write fails, since it
would have tested nothing.

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

KILLS = 8           # at least this many kills ...
MAX_TRIALS = 24     # ... and at most this many trials to get KILLS / 2 of them inside a write
# Generous, since a sanitized kiln starts many times slower; a write that
# never starts within it is a failure, not a skip.
FIRST_WRITE_TIMEOUT = 600.0


def step_of(path):
    out = subprocess.run([kiln, "eval", "--ckpt", path, "--data", data], capture_output=True, text=True)
    if out.returncode != 0:
        print("checkpoint does not load:", out.stderr.strip())
        return None
    meta = open(path, "rb").read(1 << 20)
    return int(re.search(rb'"step":"(\d+)"', meta).group(1))


def wait_for(predicate, proc, deadline):
    """Polls every half millisecond; False if the process exits or time runs out."""
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def kill_trial(rng, durations):
    """One run killed at a random moment around a write; returns whether the
    process was still running when killed."""
    p = subprocess.Popen([kiln, "train", model] + common + ["--resume", ckpt, "--save-every", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    temp = f"{ckpt}.tmp.{p.pid}"
    exists = lambda: os.path.exists(temp)
    deadline = time.monotonic() + FIRST_WRITE_TIMEOUT
    # Two whole writes, the second timed (a process's first write is slower:
    # cold buffers), then the kill somewhere around the third.
    for write in range(2):
        if not wait_for(exists, p, deadline):
            p.kill()
            p.wait()
            raise SystemExit(f"kiln train made no checkpoint write within {FIRST_WRITE_TIMEOUT:.0f} s")
        started = time.monotonic()
        wait_for(lambda: not exists(), p, deadline)
        if write == 1:
            durations.append(time.monotonic() - started)
    wait_for(exists, p, deadline)
    typical = sorted(durations)[len(durations) // 2]
    time.sleep(rng.uniform(0, 1.2 * typical))
    alive = p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.wait()
    return alive


rng = random.Random(11)
durations = []  # of the writes observed so far, in seconds
failures, mid_write, previous, trials = 0, 0, step_of(ckpt), 0
while trials < KILLS or (2 * mid_write < KILLS and trials < MAX_TRIALS):
    trial, trials = trials, trials + 1
    if not kill_trial(rng, durations):
        print(f"trial {trial}: kiln train exited before the kill")
        failures += 1
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
