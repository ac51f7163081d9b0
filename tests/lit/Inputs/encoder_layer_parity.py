"""TransformerEncoderLayer in kiln against torch.nn.TransformerEncoderLayer,
on every backend.

usage: encoder_layer_parity.py WORKDIR
Two layers, pre-norm with ReLU (PyTorch's default activation) and post-norm
with GELU and layer_norm_eps=1e-3, dropout 0, run with `kiln run` on a padded
batch (the mask keeps each text's tokens); prints, per backend and layer,
whether every output element is within 1e-5 + 1e-4 |torch| of PyTorch's
(in training mode, which has no fast path that skips padded rows).
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
layers = {
    "pre": ("TransformerEncoderLayer(8, 2, 16, dropout=0, norm_first=true)",
            dict(norm_first=True)),
    "post": ("TransformerEncoderLayer(8, 2, 12, dropout=0, activation=gelu, layer_norm_eps=0.001)",
             dict(activation="gelu", layer_norm_eps=1e-3)),
}
torch.manual_seed(0)
x = torch.randn(3, 5, 8)
keep = torch.arange(5).expand(3, 5) < torch.tensor([[5], [2], [1]])
st.save(os.path.join(work, "in.safetensors"), {"x": x.numpy(), "keep": keep.numpy()})
for name, (decl, kwargs) in layers.items():
    model = os.path.join(work, name + ".kiln")
    with open(model, "w") as f:
        f.write("model M {\n  enc = " + decl + "\n"
                "  fn forward(x: f32[B, T, 8], keep: bool[B, T]) {\n    return enc(x, mask=keep)\n  }\n}\n")
    ff = 16 if name == "pre" else 12
    layer = torch.nn.TransformerEncoderLayer(8, 2, ff, dropout=0.0, batch_first=True, **kwargs)
    layer.train()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # LayerNorm weights off 1, biases off 0
        want = layer(x, src_key_padding_mask=~keep).numpy()
    st.save(os.path.join(work, name + ".w.safetensors"),
            {"enc." + k: v.detach().numpy() for k, v in layer.state_dict().items()})
    for backend in backends("kiln"):
        out = os.path.join(work, f"{name}.{backend}.safetensors")
        subprocess.run(["kiln", "run", model, "--inputs", os.path.join(work, "in.safetensors"), "--weights",
                        os.path.join(work, name + ".w.safetensors"), "--backend", backend, "--outputs", out,
                        "--force"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        got = st.load(out)["output"]
        ok = got.shape == want.shape and bool(np.all(np.abs(got - want) <= 1e-5 + 1e-4 * np.abs(want)))
        print("encoder", name, backend, ok)
