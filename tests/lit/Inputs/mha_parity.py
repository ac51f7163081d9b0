"""MultiheadAttention in kiln against torch.nn.MultiheadAttention
(batch_first=True, key_padding_mask), on every backend.

usage: mha_parity.py WORKDIR
Self-attention with padding (some keys of each row masked) and
cross-attention without a mask, on random weights given as the module's
state_dict; prints per case and backend whether every output element is
within 1e-5 + 1e-4 |torch| of PyTorch's, and the parameter names kiln
declared.
"""
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "parity"))
import st  # noqa: E402
from kiln_backends import backends  # noqa: E402

work = sys.argv[1]
os.makedirs(work, exist_ok=True)
torch.manual_seed(0)
mha = torch.nn.MultiheadAttention(12, 3, batch_first=True)
with torch.no_grad():
    for p in mha.parameters():
        p.normal_(0, 0.5)
x = torch.randn(2, 5, 12)
y = torch.randn(2, 4, 12)
keep = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
cases = {
    "self": ("attn(x, x, x, mask=keep)", mha(x, x, x, key_padding_mask=~keep, need_weights=False)[0]),
    "cross": ("attn(x, y, y)", mha(x, y, y, need_weights=False)[0]),
}
st.save(os.path.join(work, "w.safetensors"), {"attn." + k: v.detach().numpy() for k, v in mha.state_dict().items()})
st.save(os.path.join(work, "in.safetensors"), {"x": x.numpy(), "y": y.numpy(), "keep": keep.numpy()})
for name, (expr, want) in cases.items():
    model = os.path.join(work, name + ".kiln")
    with open(model, "w") as f:
        f.write("model M {\n  attn = MultiheadAttention(12, 3)\n"
                "  fn forward(x: f32[B, T, 12], y: f32[B, 4, 12], keep: bool[B, T]) {\n    return %s\n  }\n}\n" % expr)
    want = want.detach().numpy()
    for backend in backends("kiln"):
        out = os.path.join(work, "%s.%s.safetensors" % (name, backend))
        subprocess.run(["kiln", "run", model, "--inputs", os.path.join(work, "in.safetensors"), "--weights",
                        os.path.join(work, "w.safetensors"), "--backend", backend, "--outputs", out], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        got = st.load(out)["output"]
        ok = bool(np.all(np.abs(got - want) <= 1e-5 + 1e-4 * np.abs(want)))
        print(name, backend, ok, "max error %.2g" % float(np.abs(got - want).max()))
