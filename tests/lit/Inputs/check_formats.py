"""check_formats.py KILN EXAMPLES WORK: kiln predict, eval and bench write
the same numbers in every --format. Trains a small three-class textcat,
then compares, for the same runs' outputs:
- predict: text (4 decimals) vs json (unrounded) vs tsv (9 digits), with and
  without -k; json's labels most probable first, probabilities of all labels
  summing to 1 (1e-6), the text echoed whole in json and tsv (escaped in tsv);
- eval: the text report's accuracy, macro-F1, mean loss, per-class lines and
  confusion matrix vs --format json;
- bench: the JSON document on standard output (--format json) vs the text
  lines it writes to standard error.
Prints "ok: ..." per check, exits 1 at the first mismatch."""
import json
import random
import re
import subprocess
import sys

kiln, examples, work = sys.argv[1:4]
rng = random.Random(3)
words = {"sport": "goal match team score win league coach".split(),
         "food": "bread soup cheese salt oven spice dinner".split(),
         "tech": "code kernel patch build compiler cache thread".split()}
filler = "the a to and of in for is on".split()
with open(f"{work}.tsv", "w") as f:
    for _ in range(240):
        label = rng.choice(sorted(words))
        f.write(label + "\t" + " ".join(rng.choice(words[label] if rng.random() < 0.6 else filler)
                                        for _ in range(rng.randint(3, 20))) + "\n")


def run(*args, stderr=subprocess.DEVNULL):
    return subprocess.run([kiln, *args], check=True, capture_output=True, text=True)


def fail(message):
    print("FAIL:", message)
    sys.exit(1)


ckpt = f"{work}.ckpt"
run("train", f"{examples}/textcat.kiln", "--data", f"{work}.tsv", "--out", ckpt, "--force", "--epochs", "3",
    "--param", "embed=8", "--param", "buckets=1000")
texts = ["goal match team", "bread and soup\tin the oven", "code patch\nbuild", "the a of"]
common = ["predict", "--ckpt", ckpt, "--", *texts]

# predict
text_lines = run(*common).stdout.splitlines()
json_lines = [json.loads(l) for l in run(*common[:3], "--format", "json", *common[3:]).stdout.splitlines()]
tsv_lines = run(*common[:3], "--format", "tsv", *common[3:]).stdout.splitlines()
if not (len(text_lines) == len(json_lines) == len(tsv_lines) == len(texts)):
    fail(f"predict: {len(text_lines)}, {len(json_lines)}, {len(tsv_lines)} lines for {len(texts)} texts")
escape = lambda s: s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
for text, t, j, v in zip(texts, text_lines, json_lines, tsv_lines):
    label, probs, echoed = t.split("\t")
    shown = dict((k, float(p)) for k, p in re.findall(r"(\S+) (\d\.\d{4})", probs))
    if j["text"] != text or sorted(j) != ["labels", "probs", "text"]:
        fail(f"predict json: {j}")
    if j["probs"] != sorted(j["probs"], reverse=True) or abs(sum(j["probs"]) - 1) > 1e-6:
        fail(f"predict json: probabilities not most probable first or not summing to 1: {j['probs']}")
    if j["labels"][0] != label or sorted(j["labels"]) != sorted(shown):
        fail(f"predict: text says {label} {shown}, json {j}")
    for name, p in zip(j["labels"], j["probs"]):
        if f"{p:.4f}" != f"{shown[name]:.4f}":
            fail(f"predict: {name} is {shown[name]} in text, {p} in json")
    fields = v.split("\t")
    pairs = dict(zip(fields[1:-1:2], map(float, fields[2:-1:2])))
    if fields[0] != label or fields[-1] != escape(text) or fields[1:-1:2] != j["labels"]:
        fail(f"predict tsv: {fields}")
    if any(abs(pairs[n] - p) > 1e-8 * max(p, 1e-30) + 1e-12 for n, p in zip(j["labels"], j["probs"])):
        fail(f"predict tsv {pairs} vs json {j}")
print(f"ok: predict text, json and tsv agree on {len(texts)} texts")
top_text = run(*common[:3], "-k", "2", *common[3:]).stdout.splitlines()
top_json = [json.loads(l) for l in run(*common[:3], "-k", "2", "--format", "json", *common[3:]).stdout.splitlines()]
for t, j, full in zip(top_text, top_json, json_lines):
    names = re.findall(r"(\S+) \d\.\d{4}", t.split("\t")[1])
    if names != full["labels"][:2] or j["labels"] != full["labels"][:2] or j["probs"] != full["probs"][:2]:
        fail(f"predict -k 2: text {names}, json {j}, all {full}")
print("ok: predict -k 2 keeps the two most probable labels, in order, in text and json")

# eval
text = run("eval", "--ckpt", ckpt, "--data", f"{work}.tsv").stdout
e = json.loads(run("eval", "--ckpt", ckpt, "--data", f"{work}.tsv", "--format", "json").stdout)
m = re.search(r"^(\d+) examples, mean loss (\d+\.\d{4})", text, re.M)
if int(m.group(1)) != e["examples"] or m.group(2) != f"{e['mean_loss']:.4f}":
    fail(f"eval: {m.group(0)} vs {e['examples']}, {e['mean_loss']}")
for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
    shown = re.search(rf"^{name}\s+(\d\.\d{{4}})\s+(\d+)$", text, re.M)
    if shown.group(1) != f"{e[key]:.4f}" or int(shown.group(2)) != e["examples"]:
        fail(f"eval {key}: {shown.group(0)} vs {e[key]}")
for label in e["labels"]:
    c = e["per_class"][label]
    row = re.search(rf"^{label}\s+(\d\.\d{{4}})\s+(\d\.\d{{4}})\s+(\d\.\d{{4}})\s+(\d+)$", text, re.M)
    if list(row.groups()) != [f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", str(c["support"])]:
        fail(f"eval {label}: {row.group(0)} vs {c}")
matrix = text.split("true \\ pred", 1)[1].strip().splitlines()[1:]
for label, line, counts in zip(e["labels"], matrix, e["confusion"]):
    if line.split() != [label, *map(str, counts)]:
        fail(f"eval confusion: {line!r} vs {counts}")
if len(matrix) != len(e["confusion"]) or sum(map(sum, e["confusion"])) != e["examples"]:
    fail("eval confusion: wrong size")
print(f"ok: eval text and json agree (accuracy {e['accuracy']:.4f}, {len(e['labels'])} classes, selected epoch "
      f"{e['selected_epoch']} of {e['epochs']})")

# bench
b = subprocess.run([kiln, "bench", f"{examples}/textcat.kiln", "--batch", "4", "--seq", "16", "--repeat", "2",
                    "--warmup", "1", "--backend", "onednn", "--format", "json"], check=True, capture_output=True,
                   text=True)
doc = json.loads(b.stdout)
medians = re.findall(r"^\s+(\S+)\s+(train step|inference) B=(\d+)\s+median\s+(\d+\.\d{3}) ms", b.stderr, re.M)
if len(medians) != len(doc["results"]) or not medians:
    fail(f"bench: {len(medians)} text lines, {len(doc['results'])} JSON results")
for (backend, what, batch, median), r in zip(medians, doc["results"]):
    if backend != r["backend"] or int(batch) != r["batch"] or median != f"{r['median_ms']:.3f}":
        fail(f"bench: text {backend} {what} B={batch} {median} ms vs json {r}")
print(f"ok: bench --format json: {len(doc['results'])} results equal the text's")
