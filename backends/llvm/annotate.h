//===- backends/llvm/annotate.h - assembly beside the DSL lines --*- C++ -*-===//
//
// `kiln compile --emit=asm --annotate`: the assembly LLVM prints for a plan,
// read back through its DWARF line directives (.file, .loc) and printed as
// each DSL source line (file:line and the line's text) followed by the
// instructions generated for it, with the function and branch labels; the
// other directives are left out. The lines come from the debug info the code
// generator attaches (backends/llvm/codegen.h): a generated step at its
// node's location, a kernel reached from one step only at that step's.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <string>

namespace kiln::backends::llvm_backend {

std::string annotateAssembly(const std::string &assembly);

} // namespace kiln::backends::llvm_backend
