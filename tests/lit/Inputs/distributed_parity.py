"""Trains each named model twice on DATA, in one process (--threads 1, as
each rank has on a 2-core machine) and with `mpirun -np 2`, with the same
extra options, and prints `NAME: N steps, largest relative difference X`
per model (compare_losses.py), exiting non-zero at the first difference
above TOL or failed run. A name may be MODEL:LABEL (the same model with
other options) and end in @N for N processes instead of 2 (more than the
cores: mpirun --oversubscribe). Logs and checkpoints go to
WORKDIR/LABEL.{1,N}.*

usage: distributed_parity.py KILN EXAMPLES DATA WORKDIR TOL NAME[,NAME...] [-- TRAIN OPTIONS...]"""
import os
import re
import shlex
import subprocess
import sys

kiln, examples, data, work, tol, names = sys.argv[1:7]
extra = sys.argv[8:] if len(sys.argv) > 7 and sys.argv[7] == "--" else []
os.makedirs(work, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
for name in names.split(","):
    name, _, processes = name.partition("@")
    processes = int(processes or 2)
    model = name.split(":")[0]  # NAME or MODEL:LABEL (the same model with other options)
    label = name.split(":")[-1]
    logs = []
    for ranks in (1, processes):
        log, ckpt = (os.path.join(work, f"{label}.{ranks}.{ext}") for ext in ("log", "ckpt"))
        if os.path.exists(log):
            os.remove(log)
        command = [kiln, "train", os.path.join(examples, model + ".kiln"), "--data", data, "--out", ckpt,
                   "--loss-log", log, "--force"] + extra
        if ranks == 1:
            command += ["--threads", "1"]
        else:
            oversubscribe = ["--oversubscribe"] if ranks > (os.cpu_count() or 1) else []
            command = shlex.split(os.environ.get("KILN_MPIRUN", "mpirun")) + oversubscribe + ["-np", str(ranks)] + command
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"{label}: {' '.join(command)} failed ({run.returncode}):\n{run.stdout}{run.stderr}")
        with open(os.path.join(work, f"{label}.{ranks}.out"), "w") as f:
            f.write(run.stdout)
        logs.append(log)
    # The validation scores at the end of each epoch: the same counts, and
    # the mean loss as printed (4 decimals; the sums' order differs).
    scores = []
    for ranks in (1, processes):
        with open(os.path.join(work, f"{label}.{ranks}.out")) as f:
            scores.append(re.findall(r"valid loss (\S+) acc (\S+) macro-F1 (\S+)", f.read()))
    if scores[0] != scores[1]:
        sys.exit(f"{label}: the validation scores differ: {scores[0]} in one process, {scores[1]} in {processes}")
    compare = subprocess.run([sys.executable, os.path.join(here, "compare_losses.py"), logs[0], logs[1], tol],
                             capture_output=True, text=True)
    validated = f", {len(scores[0])} equal validation{'s' if len(scores[0]) != 1 else ''}" if scores[0] else ""
    print(f"{label}: {compare.stdout.strip()}{validated}", flush=True)
    if compare.returncode != 0:
        sys.exit(f"{label}: {compare.stderr.strip()}")
