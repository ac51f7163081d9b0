"""The 2x2 of (initial weights) x (trainer) for one seed, each the full
recipe (Adam 1e-3, batch 64, 5 epochs, max-len 256, valid-split 0.1) and
the same batches (torch_train's pipeline = kiln's), scored on the test file:

  kiln init  + kiln train     `kiln train --seed S`, `kiln eval`
  kiln init  + torch          torch_train's loop from kiln's --epochs 0 checkpoint
  torch init + kiln train     kiln's --epochs 0 checkpoint with its parameters
                              replaced by torch.manual_seed(S)'s default init,
                              then `kiln train --resume` (epoch 0, step 0)
  torch init + torch          bench/torch_train.py as it is

Prints one line: seed and the four test accuracies. Also checks that kiln's
test accuracy of a checkpoint equals torch's evaluation of the same weights
(the test pipeline), printed as `eval-check`.

usage: cross_init.py TRAIN.tsv TEST.tsv WORK_DIR --seed S [--model sdpa] [--backend onednn] [--kiln PATH]
                     [--kiln-only]"""
import argparse
import json
import os
import struct
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import step_compare as sc  # noqa: E402
import st  # noqa: E402
import tokenizer  # noqa: E402
import torch_train as tt  # noqa: E402


def save_with_meta(path, tensors, src):
    data = open(src, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8:8 + n])["__metadata__"]
    st.save(path, tensors, meta)


def kiln_eval(kiln, ckpt, test, backend):
    out = subprocess.run([kiln, "eval", "--ckpt", ckpt, "--data", test, "--backend", backend, "--threads", "1"],
                         check=True, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1")).stdout
    return float(next(l.split()[1] for l in out.splitlines() if l.startswith("accuracy")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("work")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--model", default="sdpa")
    ap.add_argument("--backend", default="onednn")
    ap.add_argument("--kiln", default="/tmp/kiln-sdpa/kiln")
    ap.add_argument("--kiln-only", action="store_true", help="only the two kiln-trained cells (faster)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.work, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    kmodel = os.path.join(sc.ROOT, "examples", f"classifier_{a.model}.kiln")
    s = a.seed
    common = ["--backend", a.backend, "--threads", "1", "--force"]

    names, vocab, ids, labels = sc.prepare(a.train, s)
    test_part = tt.read_tsv(a.test)
    label_ids = {n: i for i, n in enumerate(names)}
    test_ids, test_labels = tt.encode_records(test_part, [tokenizer.tokenize(t) for _, t in test_part], vocab,
                                              label_ids, 256)

    def torch_train(model):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(5):
            tt.train_epoch(model, opt, ids, labels, 64, s, epoch, 1)
        return tt.evaluate(model, test_ids, test_labels, len(names), 64, 1)[0]

    # kiln init
    init = os.path.join(a.work, f"init_{a.model}_{s}.safetensors")
    subprocess.run([a.kiln, "train", kmodel, "--data", a.train, "--out", init, "--epochs", "0", "--seed", str(s),
                    *common], check=True, env=env, stdout=subprocess.DEVNULL)
    kinit = st.load(init)
    # torch init, exactly as torch_train.py makes it
    torch.manual_seed(s)
    tmodel, _ = tt.build_model(a.model, len(vocab), len(names))
    tinit = {n: p.detach().numpy().copy() for n, p in tmodel.named_parameters()}

    # kiln trainer, kiln init
    kk = os.path.join(a.work, f"kk_{a.model}_{s}.safetensors")
    subprocess.run([a.kiln, "train", kmodel, "--data", a.train, "--out", kk, "--seed", str(s), *common],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    acc_kk = kiln_eval(a.kiln, kk, a.test, a.backend)
    # the test pipeline: torch's evaluation of kiln's final weights
    m = sc.load_model(st.load(kk), len(vocab), len(names), a.model)
    acc_kk_t = tt.evaluate(m, test_ids, test_labels, len(names), 64, 1)[0]

    # kiln trainer, torch init
    tinit_ck = os.path.join(a.work, f"tinit_{a.model}_{s}.safetensors")
    save_with_meta(tinit_ck, {k: (tinit[k] if k in tinit else np.array(v)) for k, v in kinit.items()}, init)
    kt = os.path.join(a.work, f"kt_{a.model}_{s}.safetensors")
    subprocess.run([a.kiln, "train", kmodel, "--data", a.train, "--resume", tinit_ck, "--epochs", "5", "--out", kt,
                    *common], check=True, env=env, stdout=subprocess.DEVNULL)
    acc_kt = kiln_eval(a.kiln, kt, a.test, a.backend)

    if a.kiln_only:
        print(f"{a.model} seed {s}: kiln-init+kiln {acc_kk:.4f} torch-init+kiln {acc_kt:.4f}", flush=True)
        return
    # torch trainer, both inits
    acc_tk = torch_train(sc.load_model(kinit, len(vocab), len(names), a.model))
    acc_tt = torch_train(tmodel)
    print(f"{a.model} seed {s}: kiln-init+kiln {acc_kk:.4f} kiln-init+torch {acc_tk:.4f} "
          f"torch-init+kiln {acc_kt:.4f} torch-init+torch {acc_tt:.4f} | eval-check {acc_kk_t:.4f}", flush=True)


if __name__ == "__main__":
    main()
