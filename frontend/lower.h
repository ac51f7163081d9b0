//===- frontend/lower.h - from the DSL syntax tree to IR --------*- C++ -*-===//
//
// Lowering gives the AST its meaning. Hyper-parameters are evaluated (and
// overridden by `--param name=value`), the model's layers are instantiated
// with PyTorch state_dict names (`attention.linear1.weight`), and every
// function of the `model` becomes one graph of the module (`forward`, ...),
// with module calls and free functions inlined. Shapes are checked as each op
// is built (through ir::Builder), so a shape error points at the DSL
// expression that caused it.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "frontend/ast.h"
#include "ir/graph.h"

#include <map>
#include <string>

namespace kiln::frontend {

struct LowerOptions {
  /// `--param name=value` overrides; an unknown name is an error.
  std::map<std::string, std::string> overrides;
};

struct LoweredModel {
  std::string name; ///< the `model` declaration's name
  ir::Module module;
  /// Final values of the hyper-parameters after overrides, in declaration order.
  std::vector<std::pair<std::string, double>> hyperParams;
};

LoweredModel lower(const Program &program, const LowerOptions &options = {});

/// Reads, parses and lowers a DSL file (registering its text for error quotes).
LoweredModel compileFile(const std::string &path, const LowerOptions &options = {});
/// Same for DSL text held in memory.
LoweredModel compileSource(const std::string &text, const std::string &file, const LowerOptions &options = {});

/// Reads a whole file; kiln::Error naming the path when it cannot.
std::string readFile(const std::string &path);

} // namespace kiln::frontend
