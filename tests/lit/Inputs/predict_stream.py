"""Checks that kiln predict answers standard input line by line: it writes
one line, waits (at most 60 s) for that line's answer before writing the
next, and only then closes the pipe. A predict that reads all of stdin
before printing anything never answers the first line while the pipe is
open, and the wait times out.

usage: predict_stream.py KILN CKPT"""
import selectors
import subprocess
import sys

kiln, ckpt = sys.argv[1], sys.argv[2]
p = subprocess.Popen([kiln, "predict", "--ckpt", ckpt], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
sel = selectors.DefaultSelector()
sel.register(p.stdout, selectors.EVENT_READ)
for text in ["free money now", "see you at lunch"]:
    p.stdin.write(text + "\n")
    p.stdin.flush()
    if not sel.select(timeout=60):
        p.kill()
        sys.exit(f"no answer to {text!r} while standard input stays open")
    print("answered before the next line:", p.stdout.readline().rstrip("\n"))
p.stdin.close()
print("after end of input:", p.stdout.read().rstrip("\n") or "nothing more")
sys.exit(p.wait())
