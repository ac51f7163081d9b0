"""LayerNorm in kiln against torch.nn.LayerNorm, on every backend.

usage: layernorm_parity.py WORKDIR
A model of two LayerNorms (one with random affine weights, given as a
state_dict, one with eps=1e-3 and no affine parameters) runs with `kiln
run`; prints, per backend, whether every output element is within
1e-5 + 1e-4 |torch| of PyTorch's, and the state_dict names kiln declared.
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
model = os.path.join(work, "norm.kiln")
with open(model, "w") as f:
    f.write("param dim = 6\n"
            "model M {\n"
            "  norm = LayerNorm(dim)\n"
            "  plain = LayerNorm(dim, eps=0.001, elementwise_affine=false)\n"
            "  fn forward(x: f32[B, T, 6]) {\n"
            "    return plain(norm(x) * 3)\n"
            "  }\n"
            "}\n")
torch.manual_seed(0)
norm = torch.nn.LayerNorm(6)
plain = torch.nn.LayerNorm(6, eps=1e-3, elementwise_affine=False)
with torch.no_grad():
    norm.weight.normal_()
    norm.bias.normal_()
x = (torch.randn(3, 5, 6) * 4 + 1).float()
x[1, 2] = 7.0  # a row of one value: variance 0, the output is the bias
want = plain(norm(x) * 3).detach().numpy()
st.save(os.path.join(work, "x.safetensors"), {"x": x.numpy()})
st.save(os.path.join(work, "w.safetensors"), {"norm." + k: v.detach().numpy() for k, v in norm.state_dict().items()})
for backend in backends("kiln"):
    out = os.path.join(work, backend + ".safetensors")
    subprocess.run(["kiln", "run", model, "--inputs", os.path.join(work, "x.safetensors"), "--weights",
                    os.path.join(work, "w.safetensors"), "--backend", backend, "--outputs", out], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got = st.load(out)["output"]
    ok = bool(np.all(np.abs(got - want) <= 1e-5 + 1e-4 * np.abs(want)))
    print("layernorm", backend, ok, "max error %.2g" % float(np.abs(got - want).max()))
