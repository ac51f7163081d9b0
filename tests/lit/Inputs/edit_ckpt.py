"""Edits a kiln checkpoint (a safetensors file) as a person with a text
editor might: sets config[KEY] to VALUE, or deletes it when VALUE is the
word DELETE; or, with KEY tensor:NAME, sets the first element of that f32
tensor to VALUE (e.g. nan). Writes OUT.

usage: edit_ckpt.py IN OUT KEY VALUE"""
import json
import struct
import sys

src, out, key, value = sys.argv[1:5]
with open(src, "rb") as f:
    data = f.read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8 : 8 + n])
config = json.loads(header["__metadata__"]["config"])
body = bytearray(data[8 + n :])
if key.startswith("tensor:"):
    begin = header[key[len("tensor:") :]]["data_offsets"][0]
    body[begin : begin + 4] = struct.pack("<f", float(value))
elif value == "DELETE":
    del config[key]
else:
    config[key] = value
header["__metadata__"]["config"] = json.dumps(config)
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + bytes(body))
