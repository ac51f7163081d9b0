"""The TSV reader of bench/torch_train.py and bench/baselines.py: (label,
text) records as runtime/data.cpp reads a .tsv file (a leading BOM dropped,
CRLF accepted, blank lines skipped, the label trimmed, further tabs kept in
the text); errors exit with file:line."""
import sys


def read_tsv(path):
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    records = []
    for number, line in enumerate(data.decode("utf-8").split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip(" \t\r\n"):
            continue
        tab = line.find("\t")
        if tab < 0:
            sys.exit(f"{path}:{number}:1: error: expected 'label<TAB>text' but the line has no tab")
        label = line[:tab].strip(" \t\r\n")
        if not label:
            sys.exit(f"{path}:{number}:1: error: empty label")
        records.append((label, line[tab + 1:]))  # further tabs stay in the text
    if not records:
        sys.exit(f"{path}: error: no examples")
    return records
