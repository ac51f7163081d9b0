"""Writes a small synthetic two-class text dataset (TSV) for the training
tests: 'spam' texts draw most words from one list, 'ham' from another, with
shared filler words and varying lengths, so a model can learn it in a few
epochs. Seeded, so every run writes the same file.

usage: make_data.py OUT.tsv N SEED"""
import random
import sys

out, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
spam = "free money win prize click offer cash cheap viagra winner urgent claim bonus deal credit".split()
ham = "meeting lunch report project code review kernel patch thanks tomorrow family weekend draft notes".split()
filler = "the a to and of in for you is on with this that it we".split()
with open(out, "w") as f:
    for _ in range(n):
        label = rng.choice(["spam", "ham"])
        words = spam if label == "spam" else ham
        length = rng.randint(3, 30)
        text = " ".join(rng.choice(words) if rng.random() < 0.5 else rng.choice(filler) for _ in range(length))
        f.write(f"{label}\t{text.capitalize()}.\n")
