"""Writes a TSV file whose cut into per-process byte ranges is awkward: a
byte order mark, CRLF line ends, blank lines, one line longer than a third
of the file (so that with 3 processes one part starts and ends inside it
and holds nothing), and no line end after the last line.

usage: awkward_data.py OUT.tsv"""
import random
import sys

rng = random.Random(3)
words = "free money win meeting lunch report code cash prize review".split()
lines = []
for i in range(40):
    label = "spam" if i % 2 else "ham"
    lines.append(f"{label}\t{' '.join(rng.choice(words) for _ in range(rng.randint(2, 12)))}")
    if i == 7:
        lines.append("")  # a blank line
lines[12] = "ham\t" + " ".join(rng.choice(words) for _ in range(900))
with open(sys.argv[1], "wb") as f:
    f.write(b"\xef\xbb\xbf" + "\r\n".join(lines).encode())
