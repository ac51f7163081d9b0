"""kiln run vs PyTorch: the forward logits of each example model, with
weights written by PyTorch, at non-default sizes and with padding in the
batch. Tolerance: max |kiln - torch| / max |torch| <= 1e-5 (f32 on both
sides), and the same against a float64 PyTorch run as a check that kiln's
error is that of f32 rounding. Also checks one --dump-all intermediate (the
attention weights) against PyTorch.

usage: forward_parity.py KILN EXAMPLES_DIR WORK_DIR"""
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import kiln_backends  # noqa: E402
import models  # noqa: E402
import st  # noqa: E402

kiln, examples, work = sys.argv[1], sys.argv[2], sys.argv[3]
backends = kiln_backends.backends(kiln)
os.makedirs(work, exist_ok=True)
torch.manual_seed(0)
sizes = {"vocab": 50, "embed": 24, "hidden": 40, "classes": 3}
tol = 1e-5
failed = False


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


for variant in ["additive", "attnpool", "sdpa"]:
    model = models.TextClassifier(variant, **sizes)
    with torch.no_grad():  # larger weights than the default init so logits are O(1)
        for p in model.parameters():
            p.mul_(3.0)
    tokens = torch.randint(1, sizes["vocab"], (4, 9), dtype=torch.int64)
    tokens[1, 5:] = 0  # padding
    tokens[2, 1:] = 0  # a one-token text
    tokens = tokens.to(torch.int32)
    weights = os.path.join(work, f"{variant}.weights.safetensors")
    inputs = os.path.join(work, f"{variant}.inputs.safetensors")
    outputs = os.path.join(work, f"{variant}.outputs.safetensors")
    st.save(weights, {k: v.detach().numpy() for k, v in model.state_dict().items()})
    st.save(inputs, {"tokens": tokens.numpy()})
    def run(*extra):
        cmd = [kiln, "run", os.path.join(examples, f"classifier_{variant}.kiln"), "--inputs", inputs, "--weights",
               weights, "--outputs", outputs, "--force", *extra]
        for k, v in sizes.items():
            cmd += ["--param", f"{k}={v}"]
        subprocess.run(cmd, check=True)
        return st.load(outputs)

    with torch.no_grad():
        ref32 = model(tokens.long()).numpy()
        ref64 = model.double()(tokens.long()).numpy()
    # The graph as it runs (the default passes, fused attention included) on
    # every backend.
    for backend in backends:
        out = run("--backend", backend)
        e32, e64 = rel_err(out["logits"], ref32), rel_err(out["logits"], ref64)
        ok = e32 <= tol and e64 <= tol
        print(f"{variant} on {backend}: logits rel err vs torch f32 {e32:.2e}, vs torch f64 {e64:.2e} (tol {tol:g}) "
              f"{'ok' if ok else 'FAIL'}")
        failed |= not ok

    # The intermediates exist as the DSL wrote them only without the passes
    # (fused attention never forms the weights).
    out = run("--dump-all", "--passes=")
    # One intermediate from --dump-all: the attention weights.
    key = next(k for k in out if k.startswith("attention.weights:softmax@"))
    model.float()
    with torch.no_grad():
        x = model.embedding(tokens.long())
        real = tokens.long() != 0
        if variant == "sdpa":
            a = model.attention
            s = a.query(x) @ a.key(x).transpose(1, 2) / np.sqrt(sizes["embed"])
            w = torch.softmax(s.masked_fill(~real.unsqueeze(1), float("-inf")), dim=2)
        else:
            a = model.attention
            s = a.linear2(torch.tanh(a.linear1(x) + x))
            w = torch.softmax(s.masked_fill(~real.unsqueeze(2), float("-inf")), dim=1)
    ew = rel_err(out[key], w.numpy())
    ok = ew <= tol
    print(f"{variant}: dumped {key.split('@')[0]} rel err {ew:.2e} {'ok' if ok else 'FAIL'}")
    failed |= not ok

print("FAILED" if failed else "ALL PASSED")
sys.exit(1 if failed else 0)
