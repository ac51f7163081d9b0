"""PyTorch baseline for `kiln train` on SpamAssassin: test accuracy, macro-F1
and training time with the recipe `kiln train` uses, so that kiln's docs can
list both side by side.

What it mirrors, step by step (kiln's defaults; the file that does it):
  data        TSV `label<TAB>text`, blank lines skipped, a leading BOM
              dropped, the label trimmed (runtime/data.cpp readTsv)
  labels      sorted, numerically when all are integers, taken from the
              train and validation parts together (LabelSet::fromExamples,
              tools/train.cpp)
  tokenizer   tests/parity/tokenizer.py, kiln's tokenizer token for token
  split       10% of the training file held out for validation with the
              same SplitMix64 + Fisher-Yates as splitExamples, so the same
              examples are held out (runtime/data.cpp, runtime/random.h)
  vocabulary  built from the training part only (after the split, as
              tools/train.cpp does): counts, sorted by count descending then
              token, the first vocab_size - 2 after <pad>=0 and <unk>=1;
              min_freq 1 (Vocabulary::build)
  encoding    the first max_len tokens, unknown ones 1, an empty text [1]
              (Vocabulary::encode)
  batches     epochOrder(n, seed, epoch) for each epoch (epochs counted from
              0), the last batch of an epoch partial, each batch padded with
              0 to the bucket of its longest text (bucketLength), at least 5 tokens for textcnn (its
              widest kernel; kiln's minimumLength) (makeBatch)
  optimizer   torch.optim.Adam(lr), betas (0.9, 0.999), eps 1e-8, no weight
              decay, no clipping, constant learning rate: `kiln train`'s
              defaults (tools/options.h, passes/training.h, tools/train.cpp)
  loss        mean cross-entropy of each batch
  models      tests/parity/models.py, sized by the `param` lines of the
              example .kiln files (vocab and classes come from the data, as
              `kiln train` sets them); dropout on in training, off in eval
  metrics     accuracy and macro-F1 (the mean over classes of
              2tp / (predicted + support), 0 when that is 0/0), as
              runtime/metrics.cpp computes them

Initial weights are PyTorch's default init under torch.manual_seed(seed):
distributed like kiln's, not the same values, so results differ by the
run-to-run noise of a seed.

The reported training time is the wall time of the training loop only
(making batches, forward, backward, Adam steps), not reading, tokenizing or
evaluating; each epoch's seconds likewise leave out its validation, as
kiln's epoch lines do.

usage (from the repository root; /usr/bin/python3 has torch 1.13 and numpy):
  LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
  /usr/bin/python3 bench/torch_train.py MODEL --train data/spam/train.tsv --test data/spam/test.tsv
      [--epochs 5] [--batch 64] [--lr 1e-3] [--max-len 256] [--vocab-size 20000]
      [--seed 0] [--threads 2]
MODEL: additive, attnpool, sdpa, transformer, textcnn or bigru. tcmalloc makes
PyTorch's many small CPU allocations markedly cheaper; preload it for
timings comparable with bench/run's.

prints one line per epoch and then
  torch MODEL: test accuracy 0.XXXX macro-F1 0.XXXX | train time NN.N s (5 epochs, 2 threads)
"""
import argparse
import math
import os
import re
import sys
import time
from collections import Counter

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "parity"))
import models  # noqa: E402
import tokenizer  # noqa: E402
import kiln_tsv  # noqa: E402  (bench/, the script's own directory)

MASK64 = (1 << 64) - 1

# The example each MODEL names, whose `param` lines size it.
KILN_FILES = {
    "additive": "examples/classifier_additive.kiln",
    "attnpool": "examples/classifier_attnpool.kiln",
    "sdpa": "examples/classifier_sdpa.kiln",
    "transformer": "examples/transformer.kiln",
    "textcnn": "examples/textcnn.kiln",
    "bigru": "examples/bigru.kiln",
}

VALID_SPLIT = 0.1  # kiln train's --valid-split default
VALID_BATCH = 256  # runtime/trainer.h evalBatchSize, for the per-epoch validation
TEST_BATCH = 64


# --- kiln's seeded shuffles (runtime/random.h, runtime/data.cpp) -------------


class SplitMix64:
    """runtime/random.h's SplitMix64, in 64-bit unsigned arithmetic."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, bound):
        # kiln rejects draws below 2^64 mod bound ((0 - bound) % bound in
        # uint64), so the result is unbiased; the same rejections keep the
        # same sequence.
        threshold = ((1 << 64) - bound) % bound
        while True:
            r = self.next()
            if r >= threshold:
                return r % bound


def fisher_yates(v, rng):
    for i in range(len(v), 1, -1):
        j = rng.below(i)
        v[i - 1], v[j] = v[j], v[i - 1]


def llround(x):
    """std::llround for x >= 0: halves round away from zero (Python's round
    rounds them to even)."""
    r = math.floor(x)
    return r + 1 if x - r >= 0.5 else r


def split_examples(examples, valid_fraction, seed):
    """splitExamples: shuffle the indices, the last round(f n) are held out."""
    n = len(examples)
    n_valid = llround(valid_fraction * n)
    order = list(range(n))
    fisher_yates(order, SplitMix64(seed ^ 0xD1B54A32D192ED03))
    train = [examples[i] for i in order[:n - n_valid]]
    valid = [examples[i] for i in order[n - n_valid:]]
    return train, valid


def epoch_order(n, seed, epoch):
    """epochOrder(n, seed, epoch, shuffle=true)."""
    order = list(range(n))
    fisher_yates(order, SplitMix64(seed ^ ((epoch * 0x9E3779B97F4A7C15) & MASK64)))
    return order


# --- data ----------------------------------------------------------------------


read_tsv = kiln_tsv.read_tsv


def sorted_labels(names):
    """LabelSet::fromExamples: sorted, as numbers when every label is a
    decimal integer (ties by text)."""
    names = sorted(set(names))
    if all(re.fullmatch(r"-?[0-9]+", n) and -2**63 <= int(n) < 2**63 for n in names):
        names.sort(key=lambda n: (int(n), n))
    return names


def build_vocabulary(token_lists, size):
    """Vocabulary::build with min_freq 1: token -> id."""
    counts = Counter(t for tokens in token_lists for t in tokens)
    # Python compares str by code point, which is the byte order of UTF-8
    # that kiln's std::string sort uses.
    kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size - 2]
    ids = {"<pad>": 0, "<unk>": 1}
    for token, _ in kept:
        ids[token] = len(ids)
    return ids


def encode(tokens, vocab, max_len):
    """Vocabulary::encode."""
    return [vocab.get(t, 1) for t in tokens[:max_len]] or [1]


def encode_records(records, token_lists, vocab, label_ids, max_len):
    ids = [encode(tokens, vocab, max_len) for tokens in token_lists]
    labels = []
    for label, _ in records:
        if label not in label_ids:
            sys.exit(f"error: unknown label '{label}'; the model knows: {', '.join(label_ids)}")
        labels.append(label_ids[label])
    return ids, labels


def bucket_length(n):
    """runtime::bucketLength: n rounded up to a multiple of 8 up to 64, of 16
    up to 128, of 32 up to 256, of 64 beyond."""
    step = 8 if n <= 64 else 16 if n <= 128 else 32 if n <= 256 else 64
    return max(step, (n + step - 1) // step * step)


def make_batch(ids, labels, order, min_length):
    """makeBatch: the texts of `order`, padded with 0 to the bucket of the
    longest (and to at least min_length)."""
    longest = bucket_length(max(min_length, max(len(ids[i]) for i in order)))
    tokens = torch.zeros(len(order), longest, dtype=torch.long)
    for row, i in enumerate(order):
        tokens[row, :len(ids[i])] = torch.tensor(ids[i])
    return tokens, torch.tensor([labels[i] for i in order])


# --- models ----------------------------------------------------------------------


def kiln_params(path):
    """The `param NAME = VALUE` lines of a .kiln model."""
    params = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*param\s+(\w+)\s*=\s*([0-9.eE+-]+)\s*(#.*)?$", line)
            if m:
                value = float(m.group(2))
                params[m.group(1)] = int(value) if value.is_integer() else value
    return params


def build_model(name, vocab, classes):
    """The model and its minimum sequence length (the widest kernel for
    textcnn, whose narrowest text must still fit one window)."""
    p = kiln_params(os.path.join(ROOT, KILN_FILES[name]))
    if name in ("additive", "attnpool", "sdpa"):
        return models.TextClassifier(name, vocab, p["embed"], p["hidden"], classes), 1
    if name == "transformer":
        return models.TransformerClassifier(vocab, p["embed"], p["heads"], classes, p["drop"]), 1
    if name == "bigru":
        return models.BiGRU(vocab, p["embed"], p["hidden"], classes), 1
    return models.TextCNN(vocab, p["embed"], p["filters"], classes, p["drop"]), 5


# --- training and evaluation ---------------------------------------------------


def evaluate(model, ids, labels, classes, batch, min_length):
    """Accuracy and macro-F1 over the data in file order."""
    model.eval()
    confusion = [[0] * classes for _ in range(classes)]
    with torch.no_grad():
        for begin in range(0, len(ids), batch):
            order = range(begin, min(len(ids), begin + batch))
            tokens, truth = make_batch(ids, labels, order, min_length)
            for t, p in zip(truth.tolist(), model(tokens).argmax(dim=1).tolist()):
                confusion[t][p] += 1
    total = sum(map(sum, confusion))
    accuracy = sum(confusion[c][c] for c in range(classes)) / total if total else 0.0
    f1 = []
    for c in range(classes):
        predicted = sum(confusion[t][c] for t in range(classes))
        support = sum(confusion[c])
        f1.append(2 * confusion[c][c] / (predicted + support) if predicted + support else 0.0)
    return accuracy, sum(f1) / classes


def train_epoch(model, optimizer, ids, labels, batch, seed, epoch, min_length):
    """One epoch in kiln's batch order; the mean training loss per example."""
    model.train()
    order = epoch_order(len(ids), seed, epoch)
    batch = min(batch, len(ids))  # as runtime/trainer.cpp: a batch larger than the data is the data
    loss_sum = 0.0
    for begin in range(0, len(order), batch):
        rows = order[begin:begin + batch]
        tokens, truth = make_batch(ids, labels, rows, min_length)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(tokens), truth)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(rows)
    return loss_sum / len(ids)


def plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=sorted(KILN_FILES))
    ap.add_argument("--train", required=True, help="training TSV (10%% held out for validation)")
    ap.add_argument("--test", required=True, help="test TSV")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--vocab-size", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seed = args.seed & MASK64  # kiln casts the seed to uint64

    prep_start = time.perf_counter()
    train_part, valid_part = split_examples(read_tsv(args.train), VALID_SPLIT, seed)
    test_part = read_tsv(args.test)
    names = sorted_labels(label for label, _ in train_part + valid_part)
    label_ids = {n: i for i, n in enumerate(names)}
    tokens = {part: [tokenizer.tokenize(text) for _, text in records]
              for part, records in (("train", train_part), ("valid", valid_part), ("test", test_part))}
    vocab = build_vocabulary(tokens["train"], args.vocab_size)
    train_ids, train_labels = encode_records(train_part, tokens["train"], vocab, label_ids, args.max_len)
    valid_ids, valid_labels = encode_records(valid_part, tokens["valid"], vocab, label_ids, args.max_len)
    test_ids, test_labels = encode_records(test_part, tokens["test"], vocab, label_ids, args.max_len)

    torch.manual_seed(args.seed)
    model, min_length = build_model(args.model, len(vocab), len(names))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    params = sum(p.numel() for p in model.parameters())
    print(f"torch {args.model}: {params} parameters | vocabulary {len(vocab)} | labels {','.join(names)} | "
          f"train {len(train_ids)} | valid {len(valid_ids)} | test {len(test_ids)} | "
          f"{time.perf_counter() - prep_start:.1f} s to prepare", flush=True)

    train_seconds = 0.0
    for epoch in range(args.epochs):
        start = time.perf_counter()
        loss = train_epoch(model, optimizer, train_ids, train_labels, args.batch, seed, epoch, min_length)
        seconds = time.perf_counter() - start
        train_seconds += seconds
        valid_acc, valid_f1 = evaluate(model, valid_ids, valid_labels, len(names), VALID_BATCH, min_length)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {loss:.4f} | valid acc {valid_acc:.4f} "
              f"macro-F1 {valid_f1:.4f} | {seconds:.1f} s", flush=True)

    test_acc, test_f1 = evaluate(model, test_ids, test_labels, len(names), TEST_BATCH, min_length)
    print(f"torch {args.model}: test accuracy {test_acc:.4f} macro-F1 {test_f1:.4f} | train time "
          f"{train_seconds:.1f} s ({plural(args.epochs, 'epoch')}, {plural(args.threads, 'thread')})")


if __name__ == "__main__":
    main()
