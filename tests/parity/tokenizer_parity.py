"""kiln's tokenizer vs the Python one (tokenizer.py), token list for token list:
1. the multilingual sample (English, French, German, Polish, Russian, Greek,
   Arabic, Hebrew, Hindi, Thai, Chinese, Japanese, Korean, emoji, NFKC cases);
2. every code point assigned in Python's Unicode tables, each alone and in
   four contexts that exercise words, character tokens, marks and symbols;
3. invalid UTF-8: kiln must reject exactly the lines Python's strict UTF-8
   decoder rejects, at the same byte offset.
kiln's side is kiln_print_tokens (tests/tools/print_tokens.cpp).

usage: tokenizer_parity.py KILN_PRINT_TOKENS SAMPLE WORK_DIR"""
import os
import re
import subprocess
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(__file__))
import tokenizer  # noqa: E402

print_tokens, sample, work = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(work, exist_ok=True)
failed = False


def kiln_lines(path):
    r = subprocess.run([print_tokens, path], capture_output=True)
    return r.returncode, r.stdout.decode("utf-8").split("\n")[:-1], r.stderr.decode("utf-8")


def compare(name, lines, path):
    """lines: the texts of the file at path, one per line."""
    global failed
    code, got, err = kiln_lines(path)
    if code != 0:
        print(f"{name}: kiln_print_tokens failed ({code}): {err}")
        failed = True
        return
    mismatches = 0
    tokens = 0
    for i, text in enumerate(lines):
        want = tokenizer.tokenize(text)
        tokens += len(want)
        if i >= len(got) or got[i].split(" ") != (want or [""]):
            mismatches += 1
            if mismatches <= 10:
                print(f"{name}: line {i + 1} {text!r}\n  kiln   {got[i] if i < len(got) else None!r}\n"
                      f"  python {' '.join(want)!r}")
    if len(got) != len(lines):
        print(f"{name}: kiln printed {len(got)} lines for {len(lines)}")
        mismatches += 1
    failed |= mismatches > 0
    print(f"{name}: {len(lines)} lines, {tokens} tokens, "
          f"{'identical' if mismatches == 0 else f'{mismatches} lines differ FAIL'}")


# 1. The sample. Characters Unicode 15 added are unknown to Python 3.11's
# unicodedata (Unicode 14) and would differ; the sample must not have any.
with open(sample, "rb") as f:
    text = f.read().decode("utf-8")
unknown = sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) == "Cn"})
if unknown:
    print(f"sample: code points unknown to Python's Unicode {unicodedata.unidata_version}: {' '.join(unknown)} FAIL")
    failed = True
compare("sample", text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), sample)

# 2. Every assigned code point (but LF, which ends lines) in five contexts:
# alone; inside a Latin word; after a Thai letter (a character token); twice
# around a combining acute; after a digit and before an emoji and U+0345.
contexts = [lambda c: c, lambda c: "a" + c + "b", lambda c: "\u0e01" + c + "x", lambda c: c + "\u0301" + c,
            lambda c: "1" + c + "\U0001F642" + c + "\u0345"]
assigned = [chr(cp) for cp in range(0x110000)
            if not 0xD800 <= cp <= 0xDFFF and cp != 0x0A and unicodedata.category(chr(cp)) != "Cn"]
sweep = [context(c) for c in assigned for context in contexts]
sweep_path = os.path.join(work, "every_code_point.txt")
with open(sweep_path, "w", encoding="utf-8") as f:
    f.write("\n".join(sweep) + "\n")
compare(f"every assigned code point ({len(assigned)}, Unicode {unicodedata.unidata_version}) in {len(contexts)} contexts",
        sweep, sweep_path)

# 3. Invalid UTF-8: each line has one ill-formed sequence (or none).
invalid = [b"ok", b"ab\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x82\x82\xac", b"\xd9\x85\xd8\xb1 \xed\xa0\x80",
           b"\xed\xbf\xbf", b"x \xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80",
           b"\xe4\xbd\xa0\xe4\xb8", b"\xf0\x9f\x99 ok", b"ok\x80", b"\xff", b"\xc3", b"fine \xe2\x82\xac"]
invalid_path = os.path.join(work, "invalid.txt")
with open(invalid_path, "wb") as f:
    f.write(b"\n".join(invalid) + b"\n")
code, _, err = kiln_lines(invalid_path)
got = {int(m.group(1)): int(m.group(2)) for m in re.finditer(r":(\d+): error: invalid UTF-8 at byte (\d+)", err)}
want = {}
for i, line in enumerate(invalid):
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as e:
        want[i + 1] = e.start
same = got == want and code == 1
failed |= not same
print(f"invalid UTF-8: {len(want)} of {len(invalid)} lines rejected, "
      f"{'at the same offsets' if same else f'kiln {got} python {want} FAIL'}")

print("FAILED" if failed else "ALL PASSED")
sys.exit(1 if failed else 0)
