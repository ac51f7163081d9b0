//===- ir/ops.h - op kinds, attributes and shape rules ----------*- C++ -*-===//
//
// OpKind is generated from ir/ops.def. Each op has an entry in opInfo() with
// its text name, operand count and shape rule. A shape rule maps operand types
// and attributes to the result type, or throws kiln::Error with a message that
// names the offending shapes (the builder adds the DSL location).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/types.h"

#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace kiln::ir {

enum class OpKind : uint16_t {
#define KILN_OP(Id, name, minN, maxN, rule, grad, summary) Id,
#include "ir/ops.def"
};

/// Attribute values: bool, int, float, string, or a dim list (ints/symbols).
using Attr = std::variant<bool, int64_t, double, std::string, Shape>;
/// Attributes by name; ordered so that printing is deterministic.
using Attrs = std::map<std::string, Attr>;

using ShapeRule = TensorType (*)(const std::vector<TensorType> &operands, const Attrs &attrs);

/// Whether gradients flow through an op (the grad column of ops.def).
enum class GradKind : uint8_t { Diff, NoGrad };

struct OpInfo {
  OpKind kind;
  const char *name;
  int minOperands;
  int maxOperands;
  ShapeRule shapeRule;
  GradKind grad;
  const char *summary;

  bool differentiable() const { return grad == GradKind::Diff; }
};

/// The op table, indexed by OpKind.
const std::vector<OpInfo> &allOps();
const OpInfo &opInfo(OpKind k);
inline const char *opName(OpKind k) { return opInfo(k).name; }
std::optional<OpKind> opByName(const std::string &name);

/// Runs the op's shape rule after checking the operand count.
TensorType inferType(OpKind k, const std::vector<TensorType> &operands, const Attrs &attrs);

// Attribute accessors; a missing attribute yields the default, a wrong kind
// throws kiln::Error.
bool attrBool(const Attrs &a, const std::string &name, bool dflt);
int64_t attrInt(const Attrs &a, const std::string &name, int64_t dflt);
/// The `axis` attribute of softmax, log_softmax, reductions and their
/// gradients; absent means the last axis (-1). The one place that default
/// is written, so a pass that copies an axis and a backend that reads one
/// agree on a node written without it.
int64_t axisAttr(const Attrs &a);
double attrFloat(const Attrs &a, const std::string &name, double dflt);
std::string attrString(const Attrs &a, const std::string &name, const std::string &dflt);
Shape attrDims(const Attrs &a, const std::string &name);
bool hasAttr(const Attrs &a, const std::string &name);

/// Resolves a possibly negative axis against a rank; throws when out of range.
int64_t normalizeAxis(int64_t axis, size_t rank);

} // namespace kiln::ir
