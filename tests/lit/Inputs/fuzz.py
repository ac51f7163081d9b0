"""Mutation fuzzing of the kiln driver: every mutated model or IR file must
give exit status 0 (still valid) or 1 (a located user error), never a crash,
an internal error (70) or a hang. Seeded, so a failure reproduces."""
import os
import random
import subprocess
import sys
import tempfile

kiln, examples, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(1234)
sources = []
for name in sorted(os.listdir(examples)):
    if name.endswith(".kiln"):
        path = os.path.join(examples, name)
        sources.append((name, open(path, "rb").read()))
        ir = subprocess.run([kiln, "compile", path, "--emit=ir"], capture_output=True, check=True).stdout
        sources.append((name + ".ir", ir))

tokens = [b"(", b")", b"{", b"}", b"[", b"]", b",", b"=", b"->", b"@", b"%", b"fn", b"let", b"return",
          b"model", b"module", b"param", b"\x00", b"\xff", b"999999999999", b"-1", b"1e999", b"\"", b"#", b"\n"]

def mutate(data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:  # delete a span
            del data[pos:pos + rng.randint(1, 20)]
        elif op == 1:  # insert a token
            data[pos:pos] = rng.choice(tokens)
        elif op == 2 and data:  # flip a byte
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        else:  # truncate
            del data[pos:]
    return bytes(data)

failures = 0
with tempfile.TemporaryDirectory() as tmp:
    for i in range(rounds):
        name, data = rng.choice(sources)
        suffix = ".ir" if name.endswith(".ir") else ".kiln"
        path = os.path.join(tmp, "case" + suffix)
        mutated = mutate(data)
        with open(path, "wb") as f:
            f.write(mutated)
        try:
            r = subprocess.run([kiln, "compile", path, "--emit=ir"], capture_output=True, timeout=10)
        except subprocess.TimeoutExpired:
            print(f"round {i}: hang on a mutation of {name}")
            failures += 1
            continue
        if r.returncode not in (0, 1) or (r.returncode == 1 and b"error:" not in r.stderr):
            keep = os.path.join(os.getcwd(), f"fuzz-failure-{i}{suffix}")
            with open(keep, "wb") as f:
                f.write(mutated)
            print(f"round {i}: exit {r.returncode} on a mutation of {name} (kept as {keep})")
            print(r.stderr.decode(errors="replace")[-500:])
            failures += 1
print(f"{rounds} mutations, {failures} failures")
sys.exit(1 if failures else 0)
