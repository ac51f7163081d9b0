"""Ctrl-C (SIGINT) during `kiln train` saves a checkpoint and exits with a
message saying how to resume; resuming then finishes the run.

usage: interrupt.py KILN MODEL DATA WORKDIR"""
import os
import signal
import subprocess
import sys
import time

kiln, model, data, work = sys.argv[1:5]
os.makedirs(work, exist_ok=True)
ckpt = os.path.join(work, "int.ckpt")
if os.path.exists(ckpt):
    os.remove(ckpt)
args = ["--data", data, "--epochs", "200", "--batch", "8", "--param", "embed=16", "--param", "hidden=8"]
p = subprocess.Popen([kiln, "train", model] + args + ["--out", ckpt], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
# Interrupt once training is under way (its first progress line is out), so
# that a slow start cannot make the signal arrive before the handler exists.
for line in p.stdout:
    if line.startswith("epoch"):
        break
time.sleep(0.3)
p.send_signal(signal.SIGINT)
out, err = p.communicate(timeout=60)
print("exit", p.returncode)
print(err.strip().splitlines()[-1] if err.strip() else "(no stderr)")
print("checkpoint exists" if os.path.exists(ckpt) else "no checkpoint")
# --max-steps 1 is already reached, so the resumed run does one step and stops.
r = subprocess.run([kiln, "train", model, "--data", data, "--epochs", "200", "--resume", ckpt, "--max-steps", "1"],
                   capture_output=True, text=True)
lines = r.stdout.strip().splitlines()
stopped = [l for l in lines if l.startswith("stopped after")]
print("resume:", r.returncode, lines[0] if lines else r.stderr.strip(), "/", stopped[0] if stopped else "(did not stop)")
