"""Kill one rank of a data-parallel run (SIGKILL) and check that the job
ends, with a message naming the rank that died, within TIMEOUT seconds,
that no kiln process is left, and that the last checkpoint loads and
continues (`kiln train --resume` in one process).

The kill comes after the run has written at least two checkpoints
(--save-every 2: the loss log has passed step 4), so that "the previous
checkpoint" exists; where it lands within a step is left to chance.

usage: distributed_kill.py KILN MODEL DATA WORKDIR"""
import os
import shlex
import signal
import subprocess
import sys
import time

kiln, model, data, work = sys.argv[1:5]
TIMEOUT = 30  # seconds from the kill to the end of mpirun
os.makedirs(work, exist_ok=True)
ckpt, log = os.path.join(work, "run.ckpt"), os.path.join(work, "run.log")
for path in (ckpt, log):
    if os.path.exists(path):
        os.remove(path)

env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
job = subprocess.Popen(
    shlex.split(os.environ.get("KILN_MPIRUN", "mpirun")) + ["-np", "2", kiln, "train", model, "--data", data, "--epochs", "1000", "--batch", "16",
     "--param", "embed=8", "--param", "hidden=8", "--seed", "3", "--save-every", "2", "--out", ckpt,
     "--loss-log", log],
    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)


def steps():
    try:
        with open(log) as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0


deadline = time.time() + 300
while steps() < 5:
    if job.poll() is not None:
        sys.exit("the run ended before the kill:\n" + job.stdout.read())
    if time.time() > deadline:
        job.kill()
        sys.exit("the run did not reach step 5 in 300 s")
    time.sleep(0.05)


def ranks():
    """pid -> rank of the kiln processes mpirun started."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        # This job's ranks: kiln writing this test's checkpoint.
        if os.path.basename(argv[0]) == os.path.basename(kiln).encode() and ckpt.encode() in argv and \
                environ.get(b"OMPI_COMM_WORLD_RANK") is not None:
            found[int(pid)] = int(environ[b"OMPI_COMM_WORLD_RANK"])
    return found


victims = [pid for pid, rank in ranks().items() if rank == 1]
if len(victims) != 1:
    job.kill()
    sys.exit(f"expected one process of rank 1, found {victims}")
os.kill(victims[0], signal.SIGKILL)
killed = time.time()
try:
    output, _ = job.communicate(timeout=TIMEOUT)
except subprocess.TimeoutExpired:
    job.kill()
    sys.exit(f"the job did not end within {TIMEOUT} s of the kill")
ended = time.time() - killed
print(f"mpirun exit status {job.returncode}")
print("ended within the timeout" if ended < TIMEOUT else "too slow")
# mpirun's own words name the rank and the signal.
for line in output.splitlines():
    if "rank 1" in line and "signal 9" in line:
        print("message:", line.strip())
time.sleep(0.5)
left = ranks()
print(f"{len(left)} kiln processes left")
sys.stdout.flush()
print(f"(ended {ended:.1f} s after the kill; {steps()} steps logged)", file=sys.stderr)
