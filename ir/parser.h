//===- ir/parser.h - reads the textual IR back ------------------*- C++ -*-===//
//
// Parses the form printed by ir/printer.h into a Module. Result types written
// in the text are checked against the op's shape rule, so a parsed module is
// always well typed. Errors are kiln::Error located in the IR text.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"

#include <string>

namespace kiln::ir {

Module parseModule(const std::string &text, const std::string &file = "<ir>");

} // namespace kiln::ir
