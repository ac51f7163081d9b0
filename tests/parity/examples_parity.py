"""The examples beyond the seed's three against their PyTorch twins built
from torch.nn modules (models.py), with padding in every batch, on every
backend with the default passes:
0. the forward logits of `kiln run`: max|kiln - torch| / max|torch| <= 1e-5;
1. one step through `kiln run --graph=train`: the loss and every parameter
   gradient against loss.backward(), tolerance as in train_parity.py
   (max|kiln - torch| / max(max|torch|, G/100) <= 1e-5 per tensor);
2. 20 Adam steps on 20 batches, chaining kiln's updated state, against
   torch.optim.Adam: |loss_kiln - loss_torch| <= 1e-4 * max(1, |loss_torch|).
Dropout is off (p = 0) for the comparison; tests/lit/dsl/dropout.test
checks its masks.

usage: examples_parity.py KILN EXAMPLES_DIR WORK_DIR MODEL
MODEL: transformer (nn.TransformerEncoderLayer), textcnn (nn.Conv1d), bigru
(nn.GRU over packed sequences) or textcat (two nn.Embedding, words and hashed
word pairs, and nn.Linear)."""
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import kiln_backends  # noqa: E402
import models  # noqa: E402
import st  # noqa: E402
import step_check  # noqa: E402

kiln, examples, work, name = sys.argv[1:5]
os.makedirs(work, exist_ok=True)


def pair_ids(tokens, gen):
    """textcat's `bigrams` input as its data pipeline fills it: a hashed word
    pair id in 1..buckets-1 where a pair ends, 0 at each text's first token
    and in the padding. To the graph it is just a second i32[B, T] input, so
    the ids are drawn at random (repeats included)."""
    ids = torch.randint(1, sizes["buckets"], tokens.shape, generator=gen)
    ids[:, 0] = 0
    return ids.masked_fill(tokens == 0, 0)


# Per example: the --param sizes (small, odd), the twin, the text lengths of
# a batch of T = 8 (textcnn's 3 and 1 are shorter than its widths 4 and 5: no
# window lies inside them), and the inputs after `tokens` by name, each made
# from the batch's tokens (textcat's length-1 text has no word pair).
configs = {
    "transformer": ({"vocab": 40, "embed": 12, "heads": 3, "classes": 3, "drop": 0},
                    lambda s: models.TransformerClassifier(**s), [8, 6, 3, 1, 7], {}),
    "textcnn": ({"vocab": 40, "embed": 12, "filters": 7, "classes": 3, "drop": 0},
                lambda s: models.TextCNN(**s), [8, 6, 3, 1, 5], {}),
    "bigru": ({"vocab": 40, "embed": 12, "hidden": 5, "classes": 3},
              lambda s: models.BiGRU(**s), [8, 6, 3, 1, 7], {}),
    "textcat": ({"vocab": 40, "buckets": 53, "embed": 11, "classes": 3},
                lambda s: models.TextCat(**s), [8, 6, 3, 1, 7], {"bigrams": pair_ids}),
}
sizes, twin, lengths, derived = configs[name]
logits_tol, grad_tol, loss_tol, lr, steps = 1e-5, 1e-5, 1e-4, 1e-2, 20
failed = False


def batch(gen):
    """(inputs, labels): inputs maps the name of each of the model's inputs
    to its tensor, `tokens` (padded to `lengths`) then the `derived` ones."""
    tokens = torch.randint(1, sizes["vocab"], (len(lengths), 8), generator=gen)
    for i, n in enumerate(lengths):
        tokens[i, n:] = 0
    inputs = {"tokens": tokens}
    for input_name, make in derived.items():
        inputs[input_name] = make(tokens, gen)
    return inputs, torch.randint(0, sizes["classes"], (len(lengths),), generator=gen)


def as_i32(inputs):
    return {k: v.numpy().astype(np.int32) for k, v in inputs.items()}


def kiln_run(weights, inputs, out, backend, train):
    cmd = [kiln, "run", os.path.join(examples, name + ".kiln"), "--inputs", inputs, "--weights", weights,
           "--outputs", out, "--backend", backend, "--force"]
    if train:
        cmd += ["--graph=train", "--optimizer=adam"]
    for k, v in sizes.items():
        cmd += ["--param", f"{k}={v}"]
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    return st.load(out)


def kiln_step(weights, inputs, labels, step, out, backend):
    path = os.path.join(work, "in.safetensors")
    st.save(path, {**as_i32(inputs), "labels": labels.numpy().astype(np.int32),
                   "lr": np.array(lr, dtype=np.float32), "step": np.array(step, dtype=np.float32)})
    return kiln_run(weights, path, out, backend, train=True)


for backend in kiln_backends.backends(kiln):
    torch.manual_seed(1)
    model = twin(sizes)
    model.train()  # dropout is 0; the training path, not the inference fast path
    gen = torch.Generator().manual_seed(2)
    weights = os.path.join(work, "w0.safetensors")
    st.save(weights, {k: v.detach().numpy().copy() for k, v in model.state_dict().items()})

    inputs, labels = batch(gen)
    path = os.path.join(work, "inputs.safetensors")
    st.save(path, as_i32(inputs))
    got = kiln_run(weights, path, os.path.join(work, "logits.safetensors"), backend, train=False)["logits"]
    with torch.no_grad():
        want = step_check.forward(model, inputs).numpy()
    err = float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))
    ok = err <= logits_tol
    print(f"{name} on {backend}: logits rel err {err:.1e} (tol {logits_tol:g}) {'ok' if ok else 'FAIL'}")
    failed |= not ok

    out = kiln_step(weights, inputs, labels, 1, os.path.join(work, "out1.safetensors"), backend)
    loss_err, worst, _ = step_check.compare_step(out, model, inputs, labels)
    failed |= not step_check.report_step(f"{name} on {backend}", loss_err, worst, len(list(model.parameters())),
                                         grad_tol)

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(2)

    def run_kiln(inputs, labels, step):
        return kiln_step(weights, inputs, labels, step, os.path.join(work, "out.safetensors"), backend)

    def save_state(state):
        global weights
        weights = os.path.join(work, "w.safetensors")
        st.save(weights, state)

    worst_step, last_loss = step_check.chained_steps(model, opt, [batch(gen) for _ in range(steps)], run_kiln,
                                                     save_state)
    ok = worst_step[0] <= loss_tol
    print(f"{name} on {backend}: {steps} Adam steps, worst loss rel err {worst_step[0]:.1e} at step {worst_step[1]}, "
          f"final loss {last_loss:.4f} (tol {loss_tol:g}) {'ok' if ok else 'FAIL'}")
    failed |= not ok

sys.exit(1 if failed else 0)
