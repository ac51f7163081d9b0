"""Step-by-step comparison of `kiln train` and bench/torch_train.py's loop
from the same initial weights and the same batches.

1. `kiln train --epochs 0` writes kiln's initial checkpoint for SEED; its
   vocabulary and labels are compared with torch_train's (built by
   torch_train's own functions from the same file), its tensors loaded into
   tests/parity/models.py's TextClassifier.
2. `kiln train --max-steps K --loss-log` runs K steps; torch_train's batches
   (split, epochOrder, bucketLength padding) drive torch for the same K steps
   with torch.optim.Adam. Prints per-step losses side by side and the
   parameters' max relative difference after K steps.
3. With --f64, torch also runs the same K steps in float64, to measure how
   far float32 rounding alone moves a run (the yardstick for "beyond float
   rounding").

usage: step_compare.py TRAIN.tsv WORK_DIR [--seed S] [--steps K] [--model sdpa]
                       [--backend onednn] [--kiln PATH] [--f64] [--every N]"""
import argparse
import math
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests", "parity"))
import st  # noqa: E402
import tokenizer  # noqa: E402
import torch_train as tt  # noqa: E402

PARAMS = ["embedding.weight", "attention.query.weight", "attention.query.bias", "attention.key.weight",
          "attention.key.bias", "attention.value.weight", "attention.value.bias", "fc1.weight", "fc1.bias",
          "fc2.weight", "fc2.bias"]


def read_meta(path):
    import json
    import struct
    data = open(path, "rb").read(1 << 24)
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]).get("__metadata__", {})


def prepare(train_path, seed, max_len=256, vocab_size=20000):
    """torch_train's pipeline, returning everything the loop needs."""
    train_part, valid_part = tt.split_examples(tt.read_tsv(train_path), tt.VALID_SPLIT, seed)
    names = tt.sorted_labels(label for label, _ in train_part + valid_part)
    label_ids = {n: i for i, n in enumerate(names)}
    toks = [tokenizer.tokenize(t) for _, t in train_part]
    vocab = tt.build_vocabulary(toks, vocab_size)
    ids, labels = tt.encode_records(train_part, toks, vocab, label_ids, max_len)
    return names, vocab, ids, labels


def batches(ids, labels, seed, batch, steps):
    n = len(ids)
    per_epoch = (n + batch - 1) // batch
    out = []
    epoch = 0
    while len(out) < steps:
        order = tt.epoch_order(n, seed, epoch)
        for b in range(per_epoch):
            if len(out) == steps:
                break
            out.append(tt.make_batch(ids, labels, order[b * batch:(b + 1) * batch], 1))
        epoch += 1
    return out


class KilnAdam:
    """Adam with kiln's float32 scalars (passes/training.cpp, the adam
    kernels): 1 - beta in float32 (1.0f - beta), the bias corrections as
    1 - exp(t * ln beta) in float32, p -= step_size * m / (sqrt(v) / bc2_sqrt + eps)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params = list(params)
        self.lr, self.eps = lr, eps
        self.betas = betas  # ln(beta) is taken in double, as powConst does, then rounded
        self.b = [np.float32(x) for x in betas]
        self.state = {id(p): (torch.zeros_like(p), torch.zeros_like(p)) for p in self.params}
        self.t = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        f = np.float32
        t = f(self.t)
        bc = [f(1) - np.exp(t * f(math.log(b)), dtype=np.float32) for b in self.betas]
        step_size, bc2_sqrt = f(f(self.lr) / bc[0]), np.sqrt(bc[1], dtype=np.float32)
        b1, b2 = self.b
        for p in self.params:
            m, v = self.state[id(p)]
            g = p.grad
            m.mul_(float(b1)).add_(g * float(f(1) - b1))
            v.mul_(float(b2)).add_(g * g * float(f(1) - b2))
            p.sub_(float(step_size) * (m / (v.sqrt() / float(bc2_sqrt) + self.eps)))


def torch_run(model, bs, dtype=torch.float32, every=0, ref=None, kiln_adam=False):
    model = model.to(dtype)
    opt = KilnAdam(model.parameters()) if kiln_adam else torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for k, (tokens, truth) in enumerate(bs, start=1):
        opt.zero_grad()
        loss = F.cross_entropy(model(tokens), truth)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def load_model(tensors, vocab, classes, model_name="sdpa"):
    model = tt.models.TextClassifier(model_name, vocab, 128, 256, classes)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(np.array(tensors[name])))
    return model


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train")
    ap.add_argument("work")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=34)
    ap.add_argument("--model", default="sdpa")
    ap.add_argument("--backend", default="onednn")
    ap.add_argument("--kiln", default="/tmp/kiln-sdpa/kiln")
    ap.add_argument("--f64", action="store_true")
    ap.add_argument("--kiln-adam", action="store_true", help="also run torch f32 with KilnAdam (kiln's float32 scalars)")
    ap.add_argument("--every", type=int, default=0, help="print every N-th step's losses (0: a summary)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.work, exist_ok=True)
    kiln_model = os.path.join(ROOT, "examples", f"classifier_{a.model}.kiln")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    init = os.path.join(a.work, f"init_{a.seed}.safetensors")
    subprocess.run([a.kiln, "train", kiln_model, "--data", a.train, "--out", init, "--epochs", "0", "--seed",
                    str(a.seed), "--backend", a.backend, "--threads", "1", "--force"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    meta = read_meta(init)
    import json
    kvocab, klabels = json.loads(meta["vocab"]), json.loads(meta["labels"])

    names, vocab, ids, labels = prepare(a.train, a.seed)
    tvocab = sorted(vocab, key=vocab.get)
    print(f"vocabulary: kiln {len(kvocab)} torch {len(tvocab)} identical={kvocab == tvocab}; "
          f"labels identical={klabels == names}")
    lens = [len(x) for x in ids]
    print(f"train texts {len(ids)}, tokens per text: median {sorted(lens)[len(lens) // 2]}, max {max(lens)}")

    out = os.path.join(a.work, f"k{a.steps}_{a.seed}.safetensors")
    log = os.path.join(a.work, f"k{a.steps}_{a.seed}.loss")
    if os.path.exists(log):
        os.remove(log)
    epochs = str(max(1, -(-a.steps // -(-len(ids) // 64))))
    subprocess.run([a.kiln, "train", kiln_model, "--data", a.train, "--out", out, "--epochs", epochs, "--seed",
                    str(a.seed), "--backend", a.backend, "--threads", "1", "--max-steps", str(a.steps),
                    "--loss-log", log, "--force"], check=True, env=env, stdout=subprocess.DEVNULL)
    kloss = [float(l.split()[1]) for l in open(log)]
    kfinal = st.load(out)

    init_t = st.load(init)
    bs = batches(ids, labels, a.seed, 64, a.steps)
    model = load_model(init_t, len(tvocab), len(names), a.model)
    tloss = torch_run(model, bs)
    runs = [("torch f32", tloss, model)]
    if a.f64:
        m64 = load_model(init_t, len(tvocab), len(names), a.model)
        runs.append(("torch f64", torch_run(m64, bs, torch.float64), m64))
    if a.kiln_adam:
        mk = load_model(init_t, len(tvocab), len(names), a.model)
        runs.append(("torch+kadam", torch_run(mk, bs, kiln_adam=True), mk))

    print(f"{'step':>5} {'T':>4} {'kiln':>10} " + " ".join(f"{n:>11}" for n, _, _ in runs) + "  |kiln - each|")
    worst = (0, 0)
    for k in range(a.steps):
        d = abs(kloss[k] - tloss[k])
        worst = max(worst, (d, k + 1))
        if (a.every and (k % a.every == 0 or k == a.steps - 1)) or k < 3:
            print(f"{k + 1:5d} {bs[k][0].shape[1]:4d} {kloss[k]:10.6f} " +
                  " ".join(f"{l[k]:11.6f}" for _, l, _ in runs) + "  " +
                  " ".join(f"{abs(kloss[k] - l[k]):.2e}" for _, l, _ in runs))
    print(f"worst |loss diff| kiln vs torch f32 {worst[0]:.2e} at step {worst[1]}; mean loss kiln "
          f"{np.mean(kloss):.5f} torch {np.mean(tloss):.5f}")
    for label, l, _ in runs[1:]:
        print(f"worst |loss diff| kiln vs {label} {max(abs(x - y) for x, y in zip(kloss, l)):.2e}")
    for label, _, m in runs:
        errs = {n: rel(kfinal[n], p.detach().double().numpy()) for n, p in m.named_parameters()}
        w = max(errs, key=errs.get)
        print(f"after {a.steps} steps, kiln vs {label}: max param rel err {errs[w]:.2e} ({w}); "
              f"fc2.weight {errs['fc2.weight']:.2e}, attention.query.weight {errs['attention.query.weight']:.2e}")
    if a.f64:
        m32, m64 = runs[0][2], runs[1][2]
        errs = {n: rel(p.detach().double().numpy(), q.detach().numpy())
                for (n, p), (_, q) in zip(m32.named_parameters(), m64.named_parameters())}
        w = max(errs, key=errs.get)
        print(f"after {a.steps} steps, torch f32 vs torch f64: max param rel err {errs[w]:.2e} ({w})")


if __name__ == "__main__":
    main()
