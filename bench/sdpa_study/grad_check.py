"""One training step at the corpus's real sizes (B=64, T=256, embed 128):
kiln's gradients (`kiln run --graph=train`, each backend) and torch float32's
against torch float64 as the truth, on the weights of a checkpoint and one
of torch_train's batches. Says whether kiln's per-step error is of float32
rounding size (like torch f32's) or larger.

usage: grad_check.py TRAIN.tsv CKPT WORK_DIR [--seed S] [--step K] [--backends onednn,reference]
                     [--kiln PATH]"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import step_compare as sc  # noqa: E402
import st  # noqa: E402  (tests/parity, on the path through step_compare)


def torch_grads(tensors, vocab, classes, tokens, truth, dtype):
    model = sc.load_model(tensors, vocab, classes).to(dtype)
    logits = model(tokens)
    loss = F.cross_entropy(logits, truth)
    loss.backward()
    return loss.item(), {n: p.grad.double().numpy() for n, p in model.named_parameters()}, logits.detach().double().numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train")
    ap.add_argument("ckpt")
    ap.add_argument("work")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step", type=int, default=1, help="use the batch of this step (1-based)")
    ap.add_argument("--backends", default="onednn,reference")
    ap.add_argument("--kiln", default="/tmp/kiln-sdpa/kiln")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.work, exist_ok=True)
    names, vocab, ids, labels = sc.prepare(a.train, a.seed)
    tokens, truth = sc.batches(ids, labels, a.seed, 64, a.step)[-1]
    tensors = st.load(a.ckpt)
    meta = sc.read_meta(a.ckpt)
    step = int(meta.get("step", "0")) + 1
    inputs = os.path.join(a.work, "gc.in.safetensors")
    st.save(inputs, {"tokens": tokens.numpy().astype(np.int32), "labels": truth.numpy().astype(np.int32),
                     "lr": np.array(1e-3, dtype=np.float32), "step": np.array(step, dtype=np.float32)})
    weights = os.path.join(a.work, "gc.w.safetensors")
    st.save(weights, {k: np.array(v) for k, v in tensors.items()})
    l64, g64, _ = torch_grads(tensors, len(vocab), len(names), tokens, truth, torch.float64)
    l32, g32, _ = torch_grads(tensors, len(vocab), len(names), tokens, truth, torch.float32)
    scale = max(np.max(np.abs(g)) for g in g64.values())

    def err(a_, b):
        return float(np.max(np.abs(a_ - b)) / max(np.max(np.abs(b)), scale / 100))

    rows = {"torch f32": (l32, g32)}
    for backend in a.backends.split(","):
        out = os.path.join(a.work, f"gc.out.{backend}.safetensors")
        subprocess.run([a.kiln, "run", os.path.join(sc.ROOT, "examples", "classifier_sdpa.kiln"), "--graph=train",
                        "--inputs", inputs, "--weights", weights, "--outputs", out, "--backend", backend,
                        "--threads", "1", "--force", "--param", f"vocab={len(vocab)}", "--param",
                        f"classes={len(names)}"], check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        o = st.load(out)
        rows[f"kiln {backend}"] = (float(o["loss"]), {n: o["grad." + n].astype(np.float64) for n in g64})
    print(f"batch of step {a.step}: {tuple(tokens.shape)}, real tokens per row min {int((tokens != 0).sum(1).min())} "
          f"max {int((tokens != 0).sum(1).max())}; loss f64 {l64:.9f}")
    print(f"{'param':<24}" + "".join(f"{k:>16}" for k in rows))
    print(f"{'loss (abs err)':<24}" + "".join(f"{abs(l - l64):16.2e}" for l, _ in rows.values()))
    for n in g64:
        print(f"{n:<24}" + "".join(f"{err(g[n], g64[n]):16.2e}" for _, g in rows.values()))


if __name__ == "__main__":
    main()
