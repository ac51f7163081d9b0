"""erf and gelu (exact and tanh-approximated) in kiln against PyTorch.

usage: activation_parity.py WORKDIR
Writes a one-line model per function, runs it with `kiln run` on every
backend over values from -6 to 6 (and the tails), and prints one line per
function and backend: its name and whether every element is within
1e-6 + 1e-5 |torch| of torch's float32 result.
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
x = np.concatenate([np.linspace(-6, 6, 997), [-30.0, -10.0, 10.0, 30.0, 0.0]]).astype(np.float32).reshape(1, -1)
st.save(os.path.join(work, "x.safetensors"), {"x": x})
t = torch.from_numpy(x)
cases = {
    "erf": ("erf(x)", torch.erf(t)),
    "gelu": ("gelu(x)", torch.nn.functional.gelu(t)),
    "gelu_tanh": ("gelu(x, approximate=true)", torch.nn.functional.gelu(t, approximate="tanh")),
}
for name, (expr, want) in cases.items():
    model = os.path.join(work, name + ".kiln")
    with open(model, "w") as f:
        f.write("model M {\n  fn forward(x: f32[B, N]) {\n    return %s\n  }\n}\n" % expr)
    want = want.numpy()
    for backend in backends("kiln"):
        out = os.path.join(work, "%s.%s.safetensors" % (name, backend))
        subprocess.run(["kiln", "run", model, "--inputs", os.path.join(work, "x.safetensors"), "--backend", backend,
                        "--outputs", out], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        got = st.load(out)["output"]
        ok = bool(np.all(np.abs(got - want) <= 1e-6 + 1e-5 * np.abs(want)))
        print(name, backend, ok, "max error %.2g" % float(np.abs(got - want).max()))
