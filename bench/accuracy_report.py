"""Turns the JSON lines that bench/accuracy collects into docs/ACCURACY.md
(printed on stdout): how the run was made (command, date, machine, kiln
commit), one table with every system on every corpus side by side, a table
per corpus with the details, the targets of issue 12 evaluated per corpus as
met or not met, and the corpora. Every number comes from the JSONL; nothing
is measured or remembered here.

Input (bench/accuracy writes it, in this order):
  {"run": {...}}                   the command, date, machine, kiln binary and
                                   commit, textcat's train block, the seed recipe
  {"corpus": C, "system": "kiln-MODEL", "recipe": "default"|"seed", "accuracy": ..,
   "macro_f1": .., "train_seconds": .., "wall_seconds": .., ...}      kiln
  {"corpus": C, "system": "fasttext-default"|"fasttext-tutorial"|"tfidf-svm",
   "accuracy": .., "macro_f1": .., "train_seconds": ..}   bench/baselines.py
  {"run_end": {"seconds": N, "failures": K}}

If bench/accuracy_notes.md exists, it is appended as it is (hand-written
notes; bench/accuracy does not regenerate them).

usage: accuracy_report.py ACCURACY.jsonl > docs/ACCURACY.md"""
import argparse
import json
import os
import re

here = os.path.dirname(os.path.abspath(__file__))
p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("jsonl")
a = p.parse_args()

run, end, results = {}, {}, []
with open(a.jsonl) as f:
    for number, line in enumerate(f, start=1):
        if not line.strip():
            continue
        r = json.loads(line)
        if "run" in r:
            run = r["run"]
        elif "run_end" in r:
            end = r["run_end"]
        elif "corpus" in r and "system" in r:
            results.append(r)
        else:
            raise SystemExit(f"{a.jsonl}:{number}: not a line of bench/accuracy")

corpora = []
for r in results:
    if r["corpus"] not in corpora:
        corpora.append(r["corpus"])
by = {(r["corpus"], r["system"]): r for r in results}  # the last line of a (corpus, system) wins
systems = []
for r in results:
    if r["system"] not in systems:
        systems.append(r["system"])
BASELINES = ["fasttext-default", "fasttext-tutorial", "tfidf-svm"]
# kiln first (textcat, then the examples in the order they ran), then the baselines.
systems = [s for s in systems if s not in BASELINES] + [s for s in BASELINES if s in systems]
if "kiln-textcat" in systems:
    systems.remove("kiln-textcat")
    systems.insert(0, "kiln-textcat")

seed = run.get("seed_recipe", "the seed recipe")


def name(system):
    if system == "kiln-textcat":
        return "kiln textcat (its train block)"
    if system.startswith("kiln-"):
        model = system[len("kiln-"):]
        return f"kiln {model} (seed recipe)"
    return {"fasttext-default": "fastText, default recipe", "fasttext-tutorial": "fastText, tutorial recipe",
            "tfidf-svm": "TF-IDF 1-2-grams + LinearSVC"}.get(system, system)


def anchor(corpus):
    """The link to CORPORA.md's section on CORPUS (a heading `## CORPUS: ...`), GitHub's anchor rule."""
    path = os.path.join(here, "..", "docs", "CORPORA.md")
    if os.path.exists(path):
        for line in open(path):
            if line.startswith(f"## {corpus}:"):
                slug = re.sub(r"[^\w\- ]", "", line[3:].strip().lower()).replace(" ", "-")
                return f"CORPORA.md#{slug}"
    return "CORPORA.md"


def ok(r):
    return r is not None and "error" not in r and "accuracy" in r


def secs(x):
    return f"{x:.1f} s" if x < 100 else f"{x:.0f} s"


import re  # noqa: E402

# How many tokens of a text kiln reads: the seed recipe's --max-len, and
# textcat's train block's max_len when it sets one (else kiln's default).
seed_len = re.search(r"--max-len (\d+)", seed)
seed_len = seed_len.group(1) if seed_len else "256"
textcat_len = re.search(r"^\s*max_len\s*=\s*(\d+)", run.get("textcat_train_block", ""), re.M)
textcat_len = textcat_len.group(1) if textcat_len else "256"
read_tokens = (f"reads the first {seed_len} tokens of a text" if seed_len == textcat_len else
               f"reads the first {textcat_len} tokens of a text (textcat) or {seed_len} (the other models)")

lines = ["# kiln accuracy", ""]
lines += [
    "kiln's recommended model and its example models against fastText and a linear SVM, on the five "
    "corpora of [CORPORA.md](CORPORA.md), in one run of `bench/accuracy`. Every system trains on the "
    "corpus's `train.tsv` and is tested on its `test.tsv`, on the same tokens (kiln's tokenizer; "
    "`bench/baselines.py` uses its Python twin, token for token). "
    "*textcat* is `examples/textcat.kiln` trained with no flags: the `train { }` block at the end of the "
    f"file is its recipe. The other kiln models use scripts/demo's seed recipe, `{seed}`. "
    "kiln holds 10% of the training file out for validation (textcat selects its epoch and stops early "
    f"on it) and {read_tokens}; the baselines train on the whole file and see "
    "whole texts.",
    "",
    "*Training time*: for kiln, the `trained in` figure of `kiln train` (the epochs, validation after each, "
    "checkpoints; not reading and tokenizing the data, nor building the vocabulary and compiling, which "
    "*kiln train wall* adds); for fastText, the time from the end of building its dictionary to the end of "
    "the last epoch (not reading its input nor saving the model); for the SVM, TfidfVectorizer.fit_transform "
    "+ LinearSVC.fit. kiln and fastText use both cores (fastText `-thread 2`).",
    "",
]

run_cmd = run.get("command", "?")
lines += ["## How this was produced", ""]
commit = run.get("commit", "?") + (" with uncommitted changes in the work tree" if run.get("dirty") else "")
lines += [
    f"- command: `{run_cmd}`" + (f" (took {end['seconds']:.0f} s)" if "seconds" in end else " (did not finish)"),
    f"- date: {run.get('date', '?')}",
    f"- machine: {run.get('cpu', '?')}, `nproc` {run.get('nproc', '?')}, Linux {run.get('kernel', '?')}; "
    f"load average when the run started: {run.get('load', '?')}",
    f"- kiln: `{run.get('kiln', '?')}` ({run.get('kiln_version', '?')}), git commit {commit}",
]
if run.get("textcat_train_block"):
    lines += [f"- textcat's recipe, from `{run.get('textcat_model', 'examples/textcat.kiln')}`:", "",
              "  ```", *["  " + l for l in run["textcat_train_block"].split("\n")], "  ```"]
if end.get("failures"):
    lines.append(f"- **{end['failures']} job(s) failed**; their cells say so")
lines.append("")

# One wide table: accuracy / macro-F1 / training time per corpus.
lines += ["## All corpora", "",
          "Each cell: accuracy / macro-F1 / training time. The best accuracy of each corpus is in bold.", ""]
lines += ["| system | " + " | ".join(corpora) + " |", "|---" * (len(corpora) + 1) + "|"]
best = {c: max((by[(c, s)]["accuracy"] for s in systems if ok(by.get((c, s)))), default=None) for c in corpora}
for s in systems:
    cells = []
    for c in corpora:
        r = by.get((c, s))
        if r is None:
            cells.append("-")
        elif not ok(r):
            cells.append("failed")
        else:
            acc = f"{r['accuracy']:.4f}"
            if r["accuracy"] == best[c]:
                acc = f"**{acc}**"
            cells.append(f"{acc} / {r['macro_f1']:.4f} / {secs(r['train_seconds'])}")
    lines.append(f"| {name(s)} | " + " | ".join(cells) + " |")
lines.append("")

# Per corpus: the details.
for c in corpora:
    rows = [by[(c, s)] for s in systems if (c, s) in by]
    kr = next((r for r in rows if r["system"].startswith("kiln-") and "train_examples" in r), None)
    counts = ""
    if kr:
        counts = f" ({kr['train_examples']} training + {kr['valid_examples']} validation examples for kiln"
        counts += f", {kr['test_examples']} test examples)" if "test_examples" in kr else ")"
    lines += [f"## {c}", "", f"[CORPORA.md]({anchor(c)}){counts}", ""]
    lines += ["| system | accuracy | macro-F1 | training time | kiln train wall | epochs | parameters | peak RSS |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if not ok(r):
            lines.append(f"| {name(r['system'])} | failed: {r.get('error', '?').replace('|', '/')} | | | | | | |")
            continue
        wall = secs(r["wall_seconds"]) if "wall_seconds" in r else ""
        epochs = ""
        if "epochs_run" in r:
            epochs = f"{r['epoch_selected']} of {r['epochs_run']}" if "epoch_selected" in r else str(r["epochs_run"])
        params = f"{r['parameters']:,}" if "parameters" in r else ""
        rss = f"{r['peak_rss_kib'] / 1024:.0f} MiB" if "peak_rss_kib" in r else ""
        lines.append(f"| {name(r['system'])} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
                     f"{secs(r['train_seconds'])} | {wall} | {epochs} | {params} | {rss} |")
    lines.append("")
lines += ["*epochs*: for textcat, the epoch whose model was kept (lowest validation loss) of the epochs run "
          "before early stopping. *peak RSS*: of the whole `kiln train` process (`/usr/bin/time -f %M`).", ""]

# Targets.
def at_least(t, b):
    """t's accuracy >= b's, both on the same test file: compared as counts of
    correct answers when kiln says how many examples there were (an
    accuracy in the JSONL may be rounded), else as fractions."""
    n = t.get("test_examples")
    if n:
        return round(t["accuracy"] * n) >= round(b["accuracy"] * n)
    return t["accuracy"] >= b["accuracy"]


TARGETS = [
    ("textcat accuracy >= fastText tutorial's", "fasttext-tutorial",
     lambda t, b: (at_least(t, b), f"{t['accuracy']:.4f} vs {b['accuracy']:.4f}")),
    ("textcat training time <= fastText tutorial's", "fasttext-tutorial",
     lambda t, b: (t["train_seconds"] <= b["train_seconds"],
                   f"{secs(t['train_seconds'])} vs {secs(b['train_seconds'])}")),
    ("textcat accuracy >= fastText default's", "fasttext-default",
     lambda t, b: (at_least(t, b), f"{t['accuracy']:.4f} vs {b['accuracy']:.4f}")),
    ("textcat accuracy >= TF-IDF + LinearSVC's - 0.01", "tfidf-svm",
     lambda t, b: (t["accuracy"] >= b["accuracy"] - 0.01,
                   f"{t['accuracy']:.4f} vs {b['accuracy']:.4f} - 0.01 = {b['accuracy'] - 0.01:.4f}")),
]
lines += ["## Targets", "",
          "Issue 12's targets for the recommended model, evaluated on each corpus from the numbers above "
          "(one run; accuracy on the test file, training time as defined at the top).", ""]
lines += ["| target | " + " | ".join(corpora) + " |", "|---" * (len(corpora) + 1) + "|"]
met_n = total_n = 0
for desc, other, check in TARGETS:
    cells = []
    for c in corpora:
        t, b = by.get((c, "kiln-textcat")), by.get((c, other))
        if not ok(t) or not ok(b):
            cells.append("not measured")
            continue
        met, text = check(t, b)
        met_n += met
        total_n += 1
        cells.append(f"{'met' if met else '**not met**'} ({text})")
    lines.append(f"| {desc} | " + " | ".join(cells) + " |")
lines += ["", f"{met_n} of {total_n} measured targets met." if total_n else "No target could be evaluated "
          "(textcat or the baselines missing from this run).", ""]

lines += ["## Corpora", "",
          "Every corpus is assembled from pinned Debian or npm packages by `scripts/fetch-spam` (SpamAssassin, "
          "npm) and `scripts/fetch-corpora` (the others), and split 80/20 with a fixed seed; nothing else is "
          "downloaded. [CORPORA.md](CORPORA.md) says how each is built, what its labels are, and what makes "
          "it hard.", ""]

notes = os.path.join(here, "accuracy_notes.md")
if os.path.exists(notes):
    with open(notes) as f:
        lines += [f.read().rstrip(), "",
                  "(This section is bench/accuracy_notes.md, written by hand; bench/accuracy does not "
                  "regenerate it.)", ""]
print("\n".join(lines).rstrip())
