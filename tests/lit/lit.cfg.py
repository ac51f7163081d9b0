# lit configuration for kiln's golden tests: DSL -> IR, IR round trips, and
# every diagnostic. Each test file carries its own RUN lines; FileCheck, not
# and count come from Debian's llvm-19-tools.
import os
import lit.formats

config.name = "kiln"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".kiln", ".ir", ".test"]
config.excludes = ["Inputs", "lit.cfg.py", "lit.site.cfg.py.in"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.kiln_bin_dir, "tests", "lit")

config.environment["PATH"] = os.pathsep.join(
    [config.kiln_bin_dir, config.llvm_tools_dir, config.environment.get("PATH", "")])
config.substitutions.append(("%examples", os.path.join(config.kiln_src_root, "examples")))
config.substitutions.append(("%python", config.python))
config.substitutions.append(("%srcroot", config.kiln_src_root))

# The compile cache (backends/llvm/compile_cache.h) of this run only, so that
# every run compiles afresh and nothing is left in the user's ~/.cache;
# compile_cache.test uses a cache of its own.
import atexit
import shutil
import tempfile
_cache = tempfile.mkdtemp(prefix="kiln-lit-cache-")
atexit.register(shutil.rmtree, _cache, True)
config.environment["XDG_CACHE_HOME"] = _cache

# The sanitized build: kiln (the only instrumented binary; python and PyTorch
# run as usual) halts and aborts on the first ASan, UBSan or LeakSanitizer
# report, and lit's built-in `not`, which would count that crash as the
# expected failure, gives way to LLVM's, which fails on a crash. Options the
# caller set win, as the sanitizers read the last value of a flag.
config.available_features.add("sanitized" if config.kiln_sanitized else "unsanitized")
if config.kiln_sanitized:
    for var, ours in (("ASAN_OPTIONS", config.kiln_asan_options), ("UBSAN_OPTIONS", config.kiln_ubsan_options)):
        theirs = os.environ.get(var, "")
        config.environment[var] = ours + (":" + theirs if theirs else "")
    # The ranks mpirun starts run with LeakSanitizer off: Open MPI never
    # frees what MPI_Init allocates, mostly inside components it loaded
    # itself, whose frames LeakSanitizer cannot name (so no suppression can
    # match them). ASan's other checks and UBSan stay on in them.
    config.environment["KILN_MPIRUN"] = "mpirun -x ASAN_OPTIONS=" + config.environment["ASAN_OPTIONS"] + \
        ":detect_leaks=0"
    # Every RUN line starts its negated commands with "not " (no other word
    # of a RUN line is spelled so); the lookbehind keeps paths and options.
    config.substitutions.insert(0, (r"(?<![\w./%=-])not (?=\S)", config.llvm_not + " "))

# Data-parallel tests start `mpirun -np 2 kiln train` (tests/lit/distributed*.test),
# as %mpirun (KILN_MPIRUN, set above for the sanitized suite);
# Open MPI refuses to run as root unless told, and CI runs as root.
config.environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
config.environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
config.substitutions.append(("%mpirun", config.environment.get("KILN_MPIRUN", "mpirun")))
