"""Conv1d in kiln against torch.nn.Conv1d, on every backend.

usage: conv1d_parity.py WORKDIR
A Conv1d(6, 4, 5, padding=2) called with a mask runs with `kiln run` on a
padded batch of texts of lengths 7, 4 and 1; each text's windows that lie
inside it (t < length) must equal nn.Conv1d on that text alone, within
1e-5 + 1e-4 |torch|. Prints, per backend, whether they do, and whether the
windows that reach into the padding read it as zeros (the output is the
same when the padding holds garbage).
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
model = os.path.join(work, "conv.kiln")
with open(model, "w") as f:
    f.write("model M {\n"
            "  conv = Conv1d(6, 4, 5, padding=2)\n"
            "  fn forward(x: f32[B, T, 6], keep: bool[B, T]) {\n"
            "    return conv(x, mask=keep)\n"
            "  }\n"
            "}\n")
torch.manual_seed(0)
conv = torch.nn.Conv1d(6, 4, 5, padding=2)
lengths = [7, 4, 1]
x = torch.randn(3, 7, 6)
keep = torch.zeros(3, 7, dtype=torch.bool)
for b, n in enumerate(lengths):
    keep[b, :n] = True
garbage = x.clone()
garbage[~keep] = 1e3  # what the padding holds must not matter
st.save(os.path.join(work, "w.safetensors"), {"conv." + k: v.detach().numpy() for k, v in conv.state_dict().items()})
for backend in backends("kiln"):
    outs = []
    for name, data in (("x", x), ("garbage", garbage)):
        inputs = os.path.join(work, f"{name}.safetensors")
        st.save(inputs, {"x": data.numpy(), "keep": keep.numpy()})
        out = os.path.join(work, f"{backend}.{name}.out.safetensors")
        subprocess.run(["kiln", "run", model, "--inputs", inputs, "--weights", os.path.join(work, "w.safetensors"),
                        "--backend", backend, "--outputs", out, "--force"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        outs.append(st.load(out)["output"])
    ok = outs[0].shape == (3, 7, 4)
    for b, n in enumerate(lengths):
        with torch.no_grad():
            want = conv(x[b:b + 1, :n].transpose(1, 2)).transpose(1, 2)[0].numpy()  # [n, 4]
        for got in outs:
            ok &= bool(np.all(np.abs(got[b, :n] - want) <= 1e-5 + 1e-4 * np.abs(want)))
    print("conv1d", backend, ok)
