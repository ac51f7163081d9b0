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
