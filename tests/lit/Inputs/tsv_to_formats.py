"""Writes a TSV dataset (label<TAB>text per line) again as JSON Lines and as
CSV (a header, every text quoted, and a line end inside every fifth text,
so that a record spans lines), for the tests that read every format.

usage: tsv_to_formats.py IN.tsv OUT.jsonl OUT.csv"""
import csv
import json
import sys

source, jsonl, csv_path = sys.argv[1:4]
rows = [line.rstrip("\n").split("\t", 1) for line in open(source, encoding="utf-8") if line.strip()]
with open(jsonl, "w", encoding="utf-8") as f:
    for label, text in rows:
        f.write(json.dumps({"label": label, "text": text}) + "\n")
with open(csv_path, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(["label", "text"])
    for i, (label, text) in enumerate(rows):
        if i % 5 == 0:
            words = text.split(" ")
            text = " ".join(words[: len(words) // 2]) + "\n" + " ".join(words[len(words) // 2 :])
        writer.writerow([label, text])
