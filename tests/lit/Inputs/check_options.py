"""Checks, for every command `kiln --help` lists, that its --help and its
parser agree: the options the help lists are exactly those the parser
accepts (KILN_LIST_OPTIONS=1 makes a command print its parser's options,
hidden ones included), flags and valued options alike, and each option the
help lists is accepted when given (as `--name VALUE` and `--name=VALUE`, or
as a bare flag): the error, if any, is never "unknown option". Also checks
that `kiln help CMD` prints `kiln CMD --help`, and that every command with a
--backend offers the same backends: the registry's, which are the ones
`kiln bench --backend all` runs, plus "auto"; every command that runs a
graph must have one. Prints one summary line per
command; exits 1 with the problems found.

usage: check_options.py KILN EXAMPLES_DIR"""
import os
import re
import subprocess
import sys

kiln, examples = sys.argv[1], sys.argv[2]
problems = []


def run(*args, env=None):
    return subprocess.run([kiln, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=120)


main_help = run("--help").stdout
commands = re.findall(r"^  ([a-z]+) ", main_help.split("commands:")[1], re.M)
if not commands:
    sys.exit("no commands in kiln --help")

# An option line of --help: two spaces, the names ("-h, --help"), an
# optional VALUE in capitals, then the help text.
option_line = re.compile(r"^  (-[a-zA-Z]|--[a-z][a-z-]*)(?:, (--[a-z][a-z-]*))?(?: ([A-Z][^ ]*))?(?:  |$)")

registry_backends = None
# The commands that run a graph, each of which must take --backend.
graph_runners = {"run", "train", "eval", "predict", "bench"}
for cmd in commands:
    help_text = run(cmd, "--help").stdout
    if run("help", cmd).stdout != help_text:
        problems.append(f"{cmd}: 'kiln help {cmd}' differs from 'kiln {cmd} --help'")
    in_help = {}
    for line in help_text.splitlines():
        m = option_line.match(line)
        if m:
            for name in filter(None, m.group(1, 2)):
                in_help[name] = "value" if m.group(3) else "flag"
    listed = run(cmd, env=dict(os.environ, KILN_LIST_OPTIONS="1"))
    in_parser = dict(f for f in (line.split() for line in listed.stdout.splitlines())
                     if len(f) == 2 and f[1] in ("flag", "value"))
    if listed.returncode != 0 or not in_parser:
        problems.append(f"{cmd}: KILN_LIST_OPTIONS=1 listed nothing (status {listed.returncode})")
    for name in sorted(set(in_parser) - set(in_help)):
        problems.append(f"{cmd}: {name} is accepted but not in --help")
    for name in sorted(set(in_help) - set(in_parser)):
        problems.append(f"{cmd}: {name} is in --help but not in the parser")
    for name in sorted(set(in_help) & set(in_parser)):
        if in_help[name] != in_parser[name]:
            problems.append(f"{cmd}: {name} is a {in_parser[name]} to the parser but a {in_help[name]} in --help")
    # Given on its own (no input file), each option either works or fails
    # with another error than "unknown option".
    for name, kind in sorted(in_help.items()):
        forms = [[name]] if kind == "flag" else [[name, "1"]] + ([[name + "=1"]] if name.startswith("--") else [])
        for form in forms:
            r = run(cmd, *form)
            if "unknown option" in r.stderr or r.returncode not in (0, 1, 2):
                problems.append(f"{cmd}: '{' '.join(form)}' is not accepted: status {r.returncode}, {r.stderr.strip()!r}")
    if cmd in graph_runners and "--backend" not in in_help:
        problems.append(f"{cmd}: runs a graph but takes no --backend")
    # The backends each command offers: the "a | b | c" list in --backend's entry.
    if "--backend" in in_help:
        lines = help_text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("  --backend"))
        end = next((i for i in range(start + 1, len(lines)) if option_line.match(lines[i]) or not lines[i].strip()),
                   len(lines))
        listed_backends = re.search(r"[a-z]+(?: \| [a-z]+)+", " ".join(" ".join(lines[start:end]).split()))
        offered = set(listed_backends.group(0).split(" | ")) if listed_backends else set()
        if registry_backends is None:
            bench = run("bench", os.path.join(examples, "classifier_additive.kiln"), "--backend", "all", "--mode", "infer",
                        "--batch", "1", "--seq", "1", "--repeat", "1", "--warmup", "0", "--param", "embed=4",
                        "--param", "hidden=4")
            registry_backends = set(re.findall(r"^  ([a-z]+) +inference", bench.stdout, re.M)) | {"auto"}
        expected = registry_backends | ({"all"} if cmd == "bench" else set())
        if offered != expected:
            problems.append(f"{cmd}: --backend offers {sorted(offered)}, the registry has {sorted(expected)}")
    ok = not any(p.startswith(cmd + ":") for p in problems)
    print(f"{cmd}: {len(in_help)} options, help and parser agree" if ok else f"{cmd}: PROBLEMS")

for p in problems:
    print("problem:", p)
sys.exit(1 if problems else 0)
