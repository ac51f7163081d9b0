"""check_explain.py KILN EXAMPLES WORK: kiln predict --explain on the example
models that mark their attention weights with @explain (additive, attnpool,
sdpa, bigru). Trains each for one epoch on a small synthetic set, then checks:
- backends: the weights of every text on onednn, llvm and auto (the fused
  kernels, asked for the weights) equal the reference interpreter's with no
  passes (the softmax as written, unfused) within 1e-5 absolute;
- the tokens equal the Python twin of the tokenizer (tests/parity/tokenizer.py)
  cut to --max-len, and each text's weights sum to 1 within 1e-5 (the models
  mask padding out of the softmax);
- the text format's second line holds the same tokens and weights (4 decimals);
- the --html page: one heatmap section per text, one token span per token
  (the tokenizer's count), data-w equal to the JSON weights within 1e-6 and
  summing to 1 within 1e-5, the texts' markup escaped, and nothing that
  loads from outside the page (no URL, script, @import or url()).
Prints "ok: ..." per check, exits 1 at the first failure."""
import html.parser
import json
import os
import re
import subprocess
import sys

kiln, examples, work = sys.argv[1:4]
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "parity"))
from tokenizer import tokenize  # noqa: E402

MAX_LEN = 16
TEXTS = ["Free money for you, click the offer now!",
         "Meeting notes for the project review tomorrow <b>bold</b> & more",
         "Win win win cash prize claim your bonus deal with the urgent credit offer today and tomorrow too",
         "Café résumé naïve 日本語 test"]


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def run(*args):
    r = subprocess.run([kiln, *args], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"kiln {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r.stdout


def explain_json(ckpt, *extra):
    lines = run("predict", "--ckpt", ckpt, "--explain", "--format", "json", *extra, "--", *TEXTS).splitlines()
    return [json.loads(line) for line in lines]


class Page(html.parser.HTMLParser):
    """The heatmap sections of the page: per section, its tokens' (text, data-w)."""

    def __init__(self):
        super().__init__()
        self.sections, self.in_token, self.urls = [], False, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("src", "href", "action", "poster", "data"):
            if name in a:
                self.urls.append(f"{tag} {name}={a[name]}")
        if tag == "script":
            self.urls.append("a script element")
        if tag == "section" and "text" in (a.get("class") or "").split():
            self.sections.append({"declared": int(a["data-tokens"]), "tokens": []})
        if tag == "span" and "tok" in (a.get("class") or "").split():
            self.sections[-1]["tokens"].append(["", float(a["data-w"])])
            self.in_token = True

    def handle_endtag(self, tag):
        if tag == "span":
            self.in_token = False

    def handle_data(self, data):
        if self.in_token:
            self.sections[-1]["tokens"][-1][0] += data


with open(f"{work}.tsv", "w") as f:
    for i in range(120):
        spam = i % 2 == 0
        words = ("free money win prize click offer cash" if spam else "meeting lunch report project code review").split()
        f.write(("spam" if spam else "ham") + "\t" + " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(3 + i % 20)) + "\n")

for model in ("classifier_additive", "classifier_attnpool", "classifier_sdpa", "bigru"):
    ckpt = f"{work}.{model}.ckpt"
    run("train", f"{examples}/{model}.kiln", "--data", f"{work}.tsv", "--epochs", "1", "--param", "embed=8",
        "--param", "hidden=8", "--max-len", str(MAX_LEN), "--out", ckpt)
    oracle = explain_json(ckpt, "--backend", "reference", "--passes=")
    for backend in ("onednn", "llvm", "auto"):
        got = explain_json(ckpt, "--backend", backend, "--no-cache")
        for o, g in zip(oracle, got):
            if o["tokens"] != g["tokens"]:
                fail(f"{model} {backend}: tokens {g['tokens']} != {o['tokens']}")
            worst = max(abs(a - b) for a, b in zip(o["weights"], g["weights"]))
            if worst > 1e-5:
                fail(f"{model} {backend}: weights differ from the unfused reference by {worst:.3g} "
                     f"on {o['text']!r}:\n  {g['weights']}\n  {o['weights']}")
    print(f"ok: {model}: onednn, llvm and auto weights equal the unfused reference's")

    for r, text in zip(oracle, TEXTS):
        want = tokenize(text)[:MAX_LEN] or ["<unk>"]
        if r["tokens"] != want:
            fail(f"{model}: tokens {r['tokens']} are not the tokenizer's {want}")
        if abs(sum(r["weights"]) - 1) > 1e-5:
            fail(f"{model}: weights of {text!r} sum to {sum(r['weights'])}")
    print(f"ok: {model}: tokens are the tokenizer's, weights sum to 1")

    lines = run("predict", "--ckpt", ckpt, "--explain", "--", *TEXTS).splitlines()
    for i, r in enumerate(oracle):
        pairs = lines[2 * i + 1].split()
        shown = [(pairs[k], float(pairs[k + 1])) for k in range(0, len(pairs), 2)]
        want = [(t, round(w, 4)) for t, w in zip(r["tokens"], r["weights"])]
        if len(shown) != len(want) or any(s[0] != w[0] or abs(s[1] - w[1]) > 6e-5 for s, w in zip(shown, want)):
            fail(f"{model}: text output {shown} != json {want}")
    print(f"ok: {model}: the text output shows the same tokens and weights")

    page_path = f"{work}.{model}.html"
    run("predict", "--ckpt", ckpt, "--explain", "--html", page_path, "--", *TEXTS)
    source = open(page_path, encoding="utf-8").read()
    page = Page()
    page.feed(source)
    if len(page.sections) != len(TEXTS):
        fail(f"{model}: {len(page.sections)} heatmaps for {len(TEXTS)} texts")
    for s, r in zip(page.sections, oracle):
        tokens = [t for t, _ in s["tokens"]]
        if tokens != r["tokens"] or s["declared"] != len(r["tokens"]):
            fail(f"{model}: page tokens {tokens} (data-tokens {s['declared']}) != {r['tokens']}")
        weights = [w for _, w in s["tokens"]]
        if abs(sum(weights) - 1) > 1e-5 or max(abs(a - b) for a, b in zip(weights, r["weights"])) > 1e-6:
            fail(f"{model}: page weights {weights} != {r['weights']}")
    if page.urls or re.search(r"https?:|url\(|@import|<script", source, re.I):
        fail(f"{model}: the page loads from outside: {page.urls}")
    if "<b>bold</b>" in source or "&lt;b&gt;bold&lt;/b&gt;" not in source:
        fail(f"{model}: the text's markup is not escaped")
    print(f"ok: {model}: the page has {len(TEXTS)} heatmaps of the tokenizer's tokens, weights summing to 1, "
          f"nothing external")
