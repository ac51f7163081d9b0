"""Accuracy baselines for kiln's text classifiers: fastText and a TF-IDF
linear SVM trained and tested on the same TSV files as `kiln train`, on the
same tokens (tests/parity/tokenizer.py, kiln's tokenizer in Python, token for
token), so the numbers can sit next to kiln's in docs/CORPORA.md and in a
later bench/accuracy.

Systems (--systems, default all three):
  fasttext-default   `fasttext supervised` with its defaults (softmax, dim
                     100, lr 0.1, epoch 5, unigrams, minCount 1), and
                     -thread N (default 2; fastText's own default is 12
                     threads, which on this 2-core machine only oversubscribes)
  fasttext-tutorial  the fastText tutorial's recipe: -epoch 25 -lr 1.0
                     -wordNgrams 2, same threads
  tfidf-svm          scikit-learn: TfidfVectorizer on unigrams and bigrams of
                     the tokens (otherwise defaults: smooth idf, l2 norm, raw
                     tf), LinearSVC with its defaults (C=1, squared hinge,
                     one-vs-rest); random_state=0 fixes its coordinate order

Data: TSV `label<TAB>text` read as runtime/data.cpp reads it (blank lines
skipped, a leading BOM dropped, the label trimmed). Every system trains on the
whole training file (kiln holds 10% of it out for validation) and sees whole
texts (kiln's models see the first --max-len tokens, 256 by default).

Metrics on the test file: accuracy, and macro-F1 as runtime/metrics.cpp
computes it: the mean over the classes (the training labels and any others
in the test file) of 2tp / (predicted + support), 0 when that is 0/0.
train_seconds is the wall time of training only: for fastText from the end
of its dictionary building to the end of training, as its stderr tells
(model set-up and the epochs; not reading its input, nor saving the model,
which for -wordNgrams 2 is an 800 MB file: stderr notes the whole process's
time too), for the SVM TfidfVectorizer.fit_transform + LinearSVC.fit. Not
tokenizing, writing fastText's input, or testing.

Determinism: fastText's -seed (0 by default, present in 0.9.2) fixes its
random numbers, but with more than one thread its lock-free (Hogwild) updates
interleave differently from run to run, so results vary in the last digits;
--threads 1 makes it reproducible, and slower. The SVM is deterministic.

Needs Debian's /usr/bin/python3 with the packages `fasttext` (the CLI,
/usr/bin/fasttext) and `python3-sklearn`; a system whose tool is missing is
skipped with a note on stderr. Temporary files go to a temporary directory
that is removed at the end.

usage (from anywhere):
  /usr/bin/python3 bench/baselines.py --train data/spam/train.tsv --test data/spam/test.tsv
      [--corpus NAME] [--systems fasttext-default,fasttext-tutorial,tfidf-svm]
      [--threads 2] [--jobs 2]
prints one JSON object per system and line on stdout:
  {"corpus": "spam", "system": "fasttext-default", "accuracy": 0.98, "macro_f1": 0.97, "train_seconds": 1.2}
NAME defaults to the training file's directory name (data/spam/train.tsv ->
spam); progress and notes go to stderr.
"""
import argparse
import importlib.util
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "parity"))
import tokenizer  # noqa: E402
import kiln_tsv  # noqa: E402  (bench/, the script's own directory)

SYSTEMS = ["fasttext-default", "fasttext-tutorial", "tfidf-svm"]
FASTTEXT_ARGS = {"fasttext-default": [], "fasttext-tutorial": ["-epoch", "25", "-lr", "1.0", "-wordNgrams", "2"]}


def note(msg):
    print(f"baselines: {msg}", file=sys.stderr, flush=True)


def read_tsv(path):
    """kiln_tsv.read_tsv, and labels without white space, which fastText's cannot have."""
    records = kiln_tsv.read_tsv(path)
    for label, _ in records:
        if any(c.isspace() for c in label):
            sys.exit(f"{path}: error: label {label!r} has white space, which fastText's labels cannot")
    return records


def tokenize_all(texts, jobs):
    if jobs <= 1 or len(texts) < 1000:
        return [tokenizer.tokenize(t) for t in texts]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        return pool.map(tokenizer.tokenize, texts, chunksize=256)


def metrics(truth, predicted, classes):
    """Accuracy and macro-F1 as runtime/metrics.cpp (bench/torch_train.py's evaluate)."""
    classes = sorted(set(classes) | set(truth))
    tp = {c: 0 for c in classes}
    pred_n = {c: 0 for c in classes}
    support = {c: 0 for c in classes}
    for t, p in zip(truth, predicted):
        support[t] += 1
        if p in pred_n:
            pred_n[p] += 1
        tp[t] += t == p
    accuracy = sum(tp.values()) / len(truth)
    f1 = [2 * tp[c] / (pred_n[c] + support[c]) if pred_n[c] + support[c] else 0.0 for c in classes]
    return accuracy, sum(f1) / len(classes)


def run_fasttext(system, binary, tmp, train, test, threads):
    """(predicted labels, train seconds) of one fastText recipe."""
    train_file = os.path.join(tmp, "train.txt")
    test_file = os.path.join(tmp, "test.txt")
    if not os.path.exists(train_file):
        with open(train_file, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(f"__label__{label} {' '.join(tokens)}\n" for label, tokens in train)
        with open(test_file, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(" ".join(tokens) + "\n" for _, tokens in test)
    model = os.path.join(tmp, system)
    cmd = [binary, "supervised", "-input", train_file, "-output", model, "-thread", str(threads),
           "-seed", "0", "-verbose", "1"] + FASTTEXT_ARGS[system]
    # With -verbose 1 fastText writes "Number of labels: N" to stderr once its dictionary is
    # built, and one "Progress: 100.0% ..." line when training ends, before it saves the model
    # (800 MB for -wordNgrams 2's 2M buckets); the time between the two is the training.
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log, began, ended = b"", None, None
    while True:
        chunk = os.read(proc.stderr.fileno(), 65536)
        now = time.perf_counter()
        if not chunk:
            break
        log += chunk
        if began is None and re.search(rb"Number of labels: *[0-9]+\n", log):
            began = now
        if ended is None and b"Progress:" in log:
            ended = now
    proc.wait()
    total = time.perf_counter() - start
    if proc.returncode != 0 or began is None or ended is None:
        sys.exit(f"baselines: {' '.join(cmd)} failed (exit {proc.returncode}):\n{log.decode(errors='replace')}")
    seconds = ended - began
    note(f"{system}: {seconds:.2f} s training, {total:.2f} s for the whole fasttext process "
         f"(reading, dictionary, training, saving)")
    out = subprocess.run([binary, "predict", model + ".bin", test_file], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, check=True).stdout.split("\n")
    if out and out[-1] == "":
        out.pop()
    if len(out) != len(test):
        sys.exit(f"baselines: fasttext predict gave {len(out)} lines for {len(test)} test examples")
    for ext in (".bin", ".vec"):
        if os.path.exists(model + ext):
            os.remove(model + ext)
    return [line.split()[0][len("__label__"):] if line.strip() else "" for line in out], seconds


def run_svm(train, test):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    def identity(tokens):
        return tokens

    vectorizer = TfidfVectorizer(tokenizer=identity, preprocessor=identity, token_pattern=None,
                                 lowercase=False, ngram_range=(1, 2))
    model = LinearSVC(random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        x = vectorizer.fit_transform([tokens for _, tokens in train])
        model.fit(x, [label for label, _ in train])
        seconds = time.perf_counter() - start
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        note("tfidf-svm: LinearSVC did not converge in its default 1000 iterations (result kept)")
    note(f"tfidf-svm: {x.shape[1]} features")
    return list(model.predict(vectorizer.transform([tokens for _, tokens in test]))), seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="training TSV")
    ap.add_argument("--test", required=True, help="test TSV")
    ap.add_argument("--corpus", help="name in the output (default: the training file's directory name)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, of: " + ", ".join(SYSTEMS))
    ap.add_argument("--threads", type=int, default=2, help="fastText's -thread (default 2)")
    ap.add_argument("--jobs", type=int, default=2, help="processes that tokenize (default 2)")
    args = ap.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r} (known: {', '.join(SYSTEMS)})")
    corpus = args.corpus or os.path.basename(os.path.dirname(os.path.abspath(args.train)))

    start = time.perf_counter()
    train_records, test_records = read_tsv(args.train), read_tsv(args.test)
    tokens = tokenize_all([t for _, t in train_records + test_records], args.jobs)
    train = [(label, tokens[i]) for i, (label, _) in enumerate(train_records)]
    test = [(label, tokens[len(train) + i]) for i, (label, _) in enumerate(test_records)]
    note(f"{corpus}: {len(train)} train, {len(test)} test examples, tokenized in "
         f"{time.perf_counter() - start:.1f} s")
    classes = sorted({label for label, _ in train})
    truth = [label for label, _ in test]

    binary = shutil.which("fasttext") or ("/usr/bin/fasttext" if os.access("/usr/bin/fasttext", os.X_OK) else None)
    with tempfile.TemporaryDirectory(prefix="kiln-baselines.") as tmp:
        for system in systems:
            if system.startswith("fasttext"):
                if not binary:
                    note(f"{system}: skipped: no fasttext binary (apt-get install fasttext)")
                    continue
                predicted, seconds = run_fasttext(system, binary, tmp, train, test, args.threads)
            else:
                if importlib.util.find_spec("sklearn") is None:
                    note(f"{system}: skipped: scikit-learn is not installed (apt-get install python3-sklearn)")
                    continue
                predicted, seconds = run_svm(train, test)
            accuracy, macro_f1 = metrics(truth, predicted, classes)
            print(json.dumps({"corpus": corpus, "system": system, "accuracy": accuracy,
                              "macro_f1": round(macro_f1, 6), "train_seconds": round(seconds, 3)}), flush=True)


if __name__ == "__main__":
    main()
