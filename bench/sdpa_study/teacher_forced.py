"""Per-step error of kiln's training step with the chaos taken out: torch
float64 runs the reference trajectory (kiln's initial weights, torch_train's
batches); at every step k, its state (parameters and Adam moments, rounded
to float32) is fed to one `kiln run --graph=train` step and to one torch
float32 step, and each one-step update is compared with float64's, element
by element (Adam divides by sqrt(v), so the error that matters is each
element's relative to its own update, not to the tensor's largest).

Prints per step and parameter: max |update - update64| / max|update64| and
the number of elements whose update is off by more than 1% of
max(|update64|, lr/100).

usage: teacher_forced.py TRAIN.tsv INIT_CKPT WORK_DIR [--seed S] [--steps K] [--backend onednn]"""
import argparse
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import step_compare as sc  # noqa: E402
import st  # noqa: E402

LR = 1e-3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train")
    ap.add_argument("init")
    ap.add_argument("work")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--backend", default="onednn")
    ap.add_argument("--kiln", default="/tmp/kiln-sdpa/kiln")
    ap.add_argument("--show", default="embedding.weight,attention.value.bias,fc1.weight,fc1.bias,fc2.weight")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.work, exist_ok=True)
    names, vocab, ids, labels = sc.prepare(a.train, a.seed)
    bs = sc.batches(ids, labels, a.seed, 64, a.steps)
    init = st.load(a.init)
    m64 = sc.load_model(init, len(vocab), len(names)).double()
    opt64 = torch.optim.Adam(m64.parameters(), lr=LR)
    show = a.show.split(",")
    print("step  T  " + "  ".join(f"{n} (kiln | torch32)" for n in show))
    for k, (tokens, truth) in enumerate(bs, start=1):
        # the state before step k, in float32
        state = {}
        for n, p in m64.named_parameters():
            state[n] = p.detach().float().numpy()
            s = opt64.state.get(p)
            state[f"optimizer.{n}.exp_avg"] = (s["exp_avg"].float().numpy() if s else np.zeros_like(state[n]))
            state[f"optimizer.{n}.exp_avg_sq"] = (s["exp_avg_sq"].float().numpy() if s else np.zeros_like(state[n]))
        # kiln, one step
        w = os.path.join(a.work, "tf.w.safetensors")
        inp = os.path.join(a.work, "tf.in.safetensors")
        out = os.path.join(a.work, "tf.out.safetensors")
        st.save(w, state)
        st.save(inp, {"tokens": tokens.numpy().astype(np.int32), "labels": truth.numpy().astype(np.int32),
                      "lr": np.array(LR, dtype=np.float32), "step": np.array(k, dtype=np.float32)})
        subprocess.run([a.kiln, "run", os.path.join(sc.ROOT, "examples", "classifier_sdpa.kiln"), "--graph=train",
                        "--inputs", inp, "--weights", w, "--outputs", out, "--backend", a.backend, "--threads", "1",
                        "--force", "--param", f"vocab={len(vocab)}", "--param", f"classes={len(names)}"],
                       check=True, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL)
        ko = st.load(out)
        # torch f32, one step from the same state
        m32 = sc.load_model(state, len(vocab), len(names))
        opt32 = torch.optim.Adam(m32.parameters(), lr=LR)
        for n, p in m32.named_parameters():
            if k > 1:
                opt32.state[p] = {"step": torch.tensor(float(k - 1)),
                                  "exp_avg": torch.from_numpy(state[f"optimizer.{n}.exp_avg"].copy()),
                                  "exp_avg_sq": torch.from_numpy(state[f"optimizer.{n}.exp_avg_sq"].copy())}
        opt32.zero_grad()
        F.cross_entropy(m32(tokens), truth).backward()
        opt32.step()
        # torch f64, the reference step
        before = {n: p.detach().clone() for n, p in m64.named_parameters()}
        opt64.zero_grad()
        F.cross_entropy(m64(tokens), truth).backward()
        opt64.step()
        cols = []
        for n in show:
            p64 = dict(m64.named_parameters())[n]
            u64 = (p64.detach() - before[n]).numpy()
            p0 = state[n].astype(np.float64)
            uk = ko[n].astype(np.float64) - p0
            u32 = dict(m32.named_parameters())[n].detach().double().numpy() - p0
            floor = np.maximum(np.abs(u64), LR / 100)
            cell = []
            for u in (uk, u32):
                rel = np.max(np.abs(u - u64)) / np.max(np.abs(u64))
                bad = int(np.sum(np.abs(u - u64) > 0.01 * floor))
                cell.append(f"{rel:.1e}/{bad}")
            cols.append(" | ".join(cell))
        print(f"{k:4d} {tokens.shape[1]:3d}  " + "   ".join(cols), flush=True)


if __name__ == "__main__":
    main()
