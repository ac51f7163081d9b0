"""kiln's compiled training step vs PyTorch 1.13, for each example model at
non-default sizes (set with --param) and with padding in every batch:

On every backend (the default passes, fused attention included):
1. one step through `kiln run --graph=train`: the loss and every parameter
   gradient (`grad.<name>`) against loss.backward() in PyTorch;
   tolerance max|kiln - torch| / max(max|torch|, G/100) <= 1e-5 per tensor
   (f32), G the largest gradient element of the model. The floor matters
   only for gradients that are zero in exact arithmetic (softmax is
   shift-invariant, so attention.linear2.bias and attention.key.bias get
   none) and are rounding noise (~1e-8) on both sides;
2. 20 Adam steps on 20 different batches, chaining kiln's updated parameters
   and optimizer state from one run to the next, against torch.optim.Adam;
   tolerance |loss_kiln - loss_torch| <= 1e-4 * max(1, |loss_torch|) per step;
3. the other optimizers for 10 steps each on the attention-pooling model, same
   tolerance: SGD with momentum, Nesterov and weight decay; AdamW with
   decoupled weight decay; Adam with gradient clipping by global norm
   (torch.nn.utils.clip_grad_norm_); lazy Adam (L2 weight decay and
   clipping too) against a reference written here (PyTorch has none with
   Adam's eps placement): torch.optim.Adam for every parameter but the
   embedding table, whose rows the batch names get Adam's update and the
   others keep their values and moments.

usage: train_parity.py KILN EXAMPLES_DIR WORK_DIR"""
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

kiln, examples, work = sys.argv[1], sys.argv[2], sys.argv[3]
backends = kiln_backends.backends(kiln)
os.makedirs(work, exist_ok=True)
sizes = {"vocab": 40, "embed": 12, "hidden": 20, "classes": 3}
grad_tol, loss_tol, lr, steps = 1e-5, 1e-4, 1e-2, 20
failed = False


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def batch(gen):
    tokens = torch.randint(1, sizes["vocab"], (5, 8), generator=gen)
    lengths = [8, 6, 3, 1, 7]
    for i, n in enumerate(lengths):
        tokens[i, n:] = 0
    labels = torch.randint(0, sizes["classes"], (5,), generator=gen)
    return tokens, labels


def kiln_step(variant, weights, tokens, labels, step, out, optimizer=("--optimizer=adam",), backend="reference"):
    inputs = os.path.join(work, f"{variant}.in.safetensors")
    st.save(inputs, {"tokens": tokens.numpy().astype(np.int32), "labels": labels.numpy().astype(np.int32),
                     "lr": np.array(lr, dtype=np.float32), "step": np.array(step, dtype=np.float32)})
    cmd = [kiln, "run", os.path.join(examples, f"classifier_{variant}.kiln"), "--graph=train", *optimizer,
           "--inputs", inputs, "--weights", weights, "--outputs", out, "--backend", backend, "--force"]
    for k, v in sizes.items():
        cmd += ["--param", f"{k}={v}"]
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    return st.load(out)


for backend in backends:
    for variant in ["additive", "attnpool", "sdpa"]:
        torch.manual_seed(1)
        model = models.TextClassifier(variant, **sizes)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(2.0)
        gen = torch.Generator().manual_seed(2)
        weights = os.path.join(work, f"{variant}.w0.safetensors")
        st.save(weights, {k: v.detach().numpy().copy() for k, v in model.state_dict().items()})

        # 1. One step: loss and gradients.
        tokens, labels = batch(gen)
        out = kiln_step(variant, weights, tokens, labels, 1, os.path.join(work, f"{variant}.out1.safetensors"),
                        backend=backend)
        loss_err, worst, live = step_check.compare_step(out, model, tokens, labels)
        failed |= not step_check.report_step(f"{variant} on {backend}", loss_err, worst,
                                             len(list(model.parameters())), grad_tol)

        # 2. Twenty Adam steps, batch k at step k (batch 1 is the one above).
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(2)

        def run_kiln(tokens, labels, step):
            return kiln_step(variant, weights, tokens, labels, step, os.path.join(work, f"{variant}.out.safetensors"),
                             backend=backend)

        def save_state(state):  # the next run starts from kiln's updated parameters and Adam state
            global weights
            weights = os.path.join(work, f"{variant}.w.safetensors")
            st.save(weights, state)

        worst_step, last_loss = step_check.chained_steps(model, opt, [batch(gen) for _ in range(steps)], run_kiln,
                                                         save_state)
        final = st.load(weights)
        # Parameters with no true gradient follow Adam's normalised noise on both
        # sides and drift apart harmlessly; compare the others.
        param_err = max(rel_err(final[name], p.detach().numpy()) for name, p in model.named_parameters() if name in live)
        ok = worst_step[0] <= loss_tol
        print(f"{variant} on {backend}: {steps} Adam steps, worst loss rel err {worst_step[0]:.1e} at step {worst_step[1]}, "
              f"final loss {last_loss:.4f}, final parameters rel err {param_err:.1e} (those with a gradient) (tol {loss_tol:g}) "
              f"{'ok' if ok else 'FAIL'}")
        failed |= not ok

class LazyAdamReference:
    """kiln's --optimizer lazy-adam, in PyTorch: Adam with L2 decay for every
    parameter, except that the embedding table moves (and its moments
    change) only in the rows the batch's token ids name."""

    def __init__(self, model, lr, weight_decay):
        self.model, self.lr, self.wd, self.t = model, lr, weight_decay, 0
        self.dense = torch.optim.Adam([p for n, p in model.named_parameters() if n != "embedding.weight"], lr=lr,
                                      weight_decay=weight_decay)
        table = model.embedding.weight
        self.m, self.v = torch.zeros_like(table), torch.zeros_like(table)

    def step(self, tokens):
        self.dense.step()
        self.t += 1
        table = self.model.embedding.weight
        rows = torch.unique(tokens)
        with torch.no_grad():
            g = table.grad[rows] + self.wd * table[rows]
            self.m[rows] = 0.9 * self.m[rows] + 0.1 * g
            self.v[rows] = 0.999 * self.v[rows] + 0.001 * g * g
            denom = (self.v[rows].sqrt() / (1 - 0.999 ** self.t) ** 0.5) + 1e-8
            table[rows] -= self.lr / (1 - 0.9 ** self.t) * self.m[rows] / denom


# 3. The other optimizers.
configs = [
    ("sgd momentum 0.9 nesterov wd 1e-3", ["--optimizer=sgd", "--momentum=0.9", "--nesterov", "--weight-decay=1e-3"],
     lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-3), 0.0),
    ("adamw wd 0.1", ["--optimizer=adamw", "--weight-decay=0.1"],
     lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=0.1), 0.0),
    ("adam clip-norm 0.05", ["--optimizer=adam", "--clip-norm=0.05"], lambda ps: torch.optim.Adam(ps, lr=lr), 0.05),
    ("lazy-adam wd 1e-2 clip-norm 0.05", ["--optimizer=lazy-adam", "--weight-decay=1e-2", "--clip-norm=0.05"],
     "lazy", 0.05),
]
for backend in backends:
    for label, flags, make, clip in configs:
        torch.manual_seed(3)
        model = models.TextClassifier("attnpool", **sizes)
        weights = os.path.join(work, "opt.w0.safetensors")
        st.save(weights, {k: v.detach().numpy().copy() for k, v in model.state_dict().items()})
        opt = LazyAdamReference(model, lr, 1e-2) if make == "lazy" else make(model.parameters())
        gen = torch.Generator().manual_seed(4)
        worst_step = (0.0, 0)
        for step in range(1, 11):
            tokens, labels = batch(gen)
            out = kiln_step("attnpool", weights, tokens, labels, step, os.path.join(work, "opt.out.safetensors"),
                            tuple(flags), backend)
            model.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(tokens), labels)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            if make == "lazy":
                opt.step(tokens)
            else:
                opt.step()
            err = abs(float(out["loss"]) - loss.item()) / max(1.0, abs(loss.item()))
            worst_step = max(worst_step, (err, step))
            state = {k: v for k, v in out.items() if not k.startswith("grad.") and k not in ("loss", "logits")}
            weights = os.path.join(work, "opt.w.safetensors")
            st.save(weights, state)
        final = st.load(weights)
        param_err = max(rel_err(final[name], p.detach().numpy()) for name, p in model.named_parameters()
                        if not name.endswith("linear2.bias"))
        ok = worst_step[0] <= loss_tol
        table = ""
        if make == "lazy":  # rows that stayed put must be where torch left them, too
            table_err = rel_err(final["embedding.weight"], model.embedding.weight.detach().numpy())
            ok = ok and table_err <= loss_tol
            table = f", embedding table rel err {table_err:.1e}"
        print(f"attnpool {label} on {backend}: 10 steps, worst loss rel err {worst_step[0]:.1e} at step {worst_step[1]}, "
              f"final parameters rel err {param_err:.1e}{table} (tol {loss_tol:g}) {'ok' if ok else 'FAIL'}")
        failed |= not ok

print("FAILED" if failed else "ALL PASSED")
sys.exit(1 if failed else 0)
