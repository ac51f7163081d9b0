"""Builds a small Chinese text-classification corpus from Debian's
fortunes-zh package (apt-get download fortunes-zh; dpkg-deb -x ... DIR).
Labels are the sources: proverb (《谚语》), analects (《论语》, any chapter),
caigentan (《菜根谭》), zengguang (《增广贤文》), debian (Osamu Aoki's Debian
reference), tang (tang300), song (song100). The attribution line and ANSI
colour codes are removed from each text; newlines become spaces. 80/20
train/test split with random.Random(0).

usage: make_corpus.py FORTUNES_DIR OUT_DIR   (writes train.tsv, test.tsv)"""
import collections
import os
import random
import re
import sys

src_dir, out = sys.argv[1], sys.argv[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def entries(name):
    text = open(os.path.join(src_dir, name), encoding="utf-8").read()
    for e in text.split("\n%\n"):
        e = ANSI.sub("", e).replace("\t", " ")
        lines = [l.strip() for l in e.strip().split("\n") if l.strip()]
        if lines:
            yield lines


def label_of(source):
    if source is None:
        return None
    if "论语" in source:
        return "analects"
    return {"《谚语》": "proverb", "《菜根谭》": "caigentan", "《增广贤文》": "zengguang"}.get(source) or (
        "debian" if source.startswith("Osamu Aoki") else None)


data = []
for lines in entries("chinese"):
    attr = [i for i, l in enumerate(lines) if l.startswith("--")]
    source = lines[attr[-1]][2:].strip() if attr else None
    label = label_of(source)
    if label:
        body = " ".join(l for i, l in enumerate(lines) if i not in attr)
        if body:
            data.append((label, body))
for name, label in (("tang300", "tang"), ("song100", "song")):
    for lines in entries(name):
        # drop the title and author lines (《...》, 作者：...)
        body = " ".join(l for l in lines if not l.startswith("作者") and not (l.startswith("《") and l.endswith("》")))
        if body:
            data.append((label, body))

random.Random(0).shuffle(data)
n_test = len(data) // 5
os.makedirs(out, exist_ok=True)
for name, part in (("test.tsv", data[:n_test]), ("train.tsv", data[n_test:])):
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        for label, text in part:
            f.write(f"{label}\t{text}\n")
print(len(data), "texts;", collections.Counter(l for l, _ in data))
