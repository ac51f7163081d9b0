"""Trains each named model twice on DATA, in one process (--threads 1, as
each rank has on a 2-core machine) and with `mpirun -np 2`, with the same
extra options, and prints `NAME: N steps, largest relative difference X`
per model (compare_losses.py), exiting non-zero at the first difference
above TOL or failed run. Logs and checkpoints go to WORKDIR/NAME.{1,2}.*

usage: distributed_parity.py KILN EXAMPLES DATA WORKDIR TOL NAME[,NAME...] [-- TRAIN OPTIONS...]"""
import os
import shlex
import subprocess
import sys

kiln, examples, data, work, tol, names = sys.argv[1:7]
extra = sys.argv[8:] if len(sys.argv) > 7 and sys.argv[7] == "--" else []
os.makedirs(work, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
for name in names.split(","):
    model = name.split(":")[0]  # NAME or MODEL:LABEL (the same model with other options)
    label = name.split(":")[-1]
    logs = []
    for ranks in (1, 2):
        log, ckpt = (os.path.join(work, f"{label}.{ranks}.{ext}") for ext in ("log", "ckpt"))
        if os.path.exists(log):
            os.remove(log)
        command = [kiln, "train", os.path.join(examples, model + ".kiln"), "--data", data, "--out", ckpt,
                   "--loss-log", log, "--force"] + extra
        if ranks == 1:
            command += ["--threads", "1"]
        else:
            command = shlex.split(os.environ.get("KILN_MPIRUN", "mpirun")) + ["-np", "2"] + command
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"{label}: {' '.join(command)} failed ({run.returncode}):\n{run.stdout}{run.stderr}")
        with open(os.path.join(work, f"{label}.{ranks}.out"), "w") as f:
            f.write(run.stdout)
        logs.append(log)
    compare = subprocess.run([sys.executable, os.path.join(here, "compare_losses.py"), logs[0], logs[1], tol],
                             capture_output=True, text=True)
    print(f"{label}: {compare.stdout.strip()}", flush=True)
    if compare.returncode != 0:
        sys.exit(f"{label}: {compare.stderr.strip()}")
