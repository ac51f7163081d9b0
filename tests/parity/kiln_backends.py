"""The backends a parity test runs on: every backend `kiln run --backend`
offers, except `auto` (which runs one of them), read from kiln's own help so
that a backend added to the registry is tested without editing the tests."""
import re
import subprocess


def backends(kiln):
    text = subprocess.run([kiln, "run", "--help"], check=True, capture_output=True, text=True).stdout
    # "--backend NAME  the backend that runs the graph: auto | onednn | reference (default: ...)"
    m = re.search(r"--backend NAME\s+[^:]*:\s*([a-z0-9_| \n-]+?)\s*\(default", text)
    names = [n.strip() for n in m.group(1).replace("\n", " ").split("|")]
    return [n for n in names if n and n != "auto"]
