"""Runs a command with \\t, \\n and \\\\ in its arguments turned into a tab, a
newline and a backslash, which lit's RUN lines cannot write; exits with
the command's status.

usage: escaped_args.py COMMAND [ARG ...]"""
import re
import subprocess
import sys

unescape = {"\\t": "\t", "\\n": "\n", "\\\\": "\\"}
args = [re.sub(r"\\[tn\\]", lambda m: unescape[m.group(0)], a) for a in sys.argv[1:]]
sys.exit(subprocess.run(args).returncode)
