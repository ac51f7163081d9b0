"""GRU and LSTM in kiln against torch.nn.GRU and torch.nn.LSTM, on every
backend.

usage: gru_parity.py WORKDIR
GRU(4, 3, num_layers=2, bidirectional=true), and the same LSTM, called with a
mask, run with `kiln run` on a padded batch of texts of lengths 6, 3 and 1,
against PyTorch's module on the packed sequence (pad_packed_sequence: zeros
after each text). Prints, per layer and backend, whether every output is
within 1e-5 + 1e-4 |torch|, and the state_dict names (PyTorch's) that kiln
read.
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
lengths = torch.tensor([6, 3, 1])
x = torch.randn(3, 6, 4)
keep = torch.arange(6).expand(3, 6) < lengths.unsqueeze(1)
x[~keep] = 1e3  # padding must not matter
st.save(os.path.join(work, "in.safetensors"), {"x": x.numpy(), "keep": keep.numpy()})
for cell, module in (("GRU", torch.nn.GRU), ("LSTM", torch.nn.LSTM)):
    model = os.path.join(work, cell + ".kiln")
    with open(model, "w") as f:
        f.write("model M {\n"
                f"  rnn = {cell}(4, 3, num_layers=2, bidirectional=true)\n"
                "  fn forward(x: f32[B, T, 4], keep: bool[B, T]) {\n"
                "    return rnn(x, mask=keep)\n"
                "  }\n"
                "}\n")
    rnn = module(4, 3, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        want = torch.nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=6)[0].numpy()
    state = {"rnn." + k: v.detach().numpy() for k, v in rnn.state_dict().items()}
    weights = os.path.join(work, cell + ".w.safetensors")
    st.save(weights, state)
    for backend in backends("kiln"):
        out = os.path.join(work, f"{cell}.{backend}.safetensors")
        subprocess.run(["kiln", "run", model, "--inputs", os.path.join(work, "in.safetensors"), "--weights", weights,
                        "--backend", backend, "--outputs", out, "--force"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        got = st.load(out)["output"]
        ok = got.shape == want.shape and bool(np.all(np.abs(got - want) <= 1e-5 + 1e-4 * np.abs(want)))
        print(cell, backend, ok)
    print(cell, "names", " ".join(sorted(state)))
