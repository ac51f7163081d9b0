"""Mutation fuzzing of the kiln driver: every mutated model or IR file must
give exit status 0 (still valid) or 1 (a located user error), never a crash,
an internal error (70) or a hang. A mutation that still compiles is also
differentiated and planned (--graph=train, --emit=memory), so that what the
verifier accepts cannot crash autodiff or the memory planner. Before the
random rounds, every attribute of every node of the example IR is deleted in
turn (the verifier accepts a missing attribute that has a default, and the
passes must read the same default). Seeded, so a failure reproduces."""
import os
import random
import re
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

def attribute_deletions():
    """Each (name, IR text) with one `key = value` of one attribute dict removed."""
    attr = re.compile(rb"(\{|, )([a-z_]+) = (\[[^\]]*\]|\"[^\"]*\"|[^,}]+)")
    for name, data in sources:
        if not name.endswith(".ir"):
            continue
        for m in attr.finditer(data):
            start = m.start() + (0 if m.group(1) == b", " else 1)
            end = m.end() + (2 if m.group(1) == b"{" and data[m.end():m.end() + 2] == b", " else 0)
            cut = data[:start] + data[end:]
            yield name, re.sub(rb" \{\}", b"", cut)

def check(i, name, suffix, mutated, tmp):
    """0 if every command on the mutated file behaves, else 1 (reported)."""
    path = os.path.join(tmp, "case" + suffix)
    with open(path, "wb") as f:
        f.write(mutated)
    commands = [[kiln, "compile", path, "--emit=ir"]]
    for cmd in commands:
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=10)
        except subprocess.TimeoutExpired:
            print(f"round {i}: hang in {' '.join(cmd[1:2] + cmd[3:])} on a mutation of {name}")
            return 1
        if r.returncode not in (0, 1) or (r.returncode == 1 and b"error:" not in r.stderr):
            keep = os.path.join(os.getcwd(), f"fuzz-failure-{i}{suffix}")
            with open(keep, "wb") as f:
                f.write(mutated)
            print(f"round {i}: exit {r.returncode} in {' '.join(cmd[1:2] + cmd[3:])} on a mutation of {name} (kept as {keep})")
            print(r.stderr.decode(errors="replace")[-500:])
            return 1
        if r.returncode == 0 and len(commands) == 1:
            commands += [[kiln, "compile", path, "--graph=train", "--emit=ir"],
                         [kiln, "compile", path, "--emit=memory", "--bind", "B=3,T=5"]]
    return 0

failures = 0
deletions = 0
with tempfile.TemporaryDirectory() as tmp:
    for name, mutated in attribute_deletions():
        failures += check(f"attr-{deletions}", name, ".ir", mutated, tmp)
        deletions += 1
    for i in range(rounds):
        name, data = rng.choice(sources)
        suffix = ".ir" if name.endswith(".ir") else ".kiln"
        failures += check(i, name, suffix, mutate(data), tmp)
print(f"{deletions} attribute deletions")
print(f"{rounds} mutations, {failures} failures")
sys.exit(1 if failures else 0)
