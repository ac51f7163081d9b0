//===- ir/ops.h - op kinds, attributes and shape rules ----------*- C++ -*-===//
//
// OpKind is generated from ir/ops.def. Each op has an entry in opInfo() with
// its text name, operand count, shape rule and declared attributes. A shape
// rule maps operand types and attributes to the result type, or throws
// kiln::Error with a message that names the offending shapes (the builder adds
// the DSL location).
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
#define KILN_OP(Id, name, minN, maxN, rule, grad, attrs, summary) Id,
#include "ir/ops.def"
};

/// Attribute values: bool, int, float, string, or a dim list (ints/symbols).
using Attr = std::variant<bool, int64_t, double, std::string, Shape, Dim>;
/// Attributes by name; ordered so that printing is deterministic.
using Attrs = std::map<std::string, Attr>;

/// A shape rule receives the attributes as inferType passes them: checked
/// against the op's declaration, with every declared default filled in.
using ShapeRule = TensorType (*)(const std::vector<TensorType> &operands, const Attrs &attrs);
/// The shape rule of an op with several results: one type per result.
using MultiShapeRule = std::vector<TensorType> (*)(const std::vector<TensorType> &operands, const Attrs &attrs);

/// The shape rule column of ops.def: either kind of rule.
struct ShapeRules {
  ShapeRule single = nullptr;
  MultiShapeRule multi = nullptr;
  ShapeRules(ShapeRule r) : single(r) {}
  ShapeRules(MultiShapeRule r) : multi(r) {}
  explicit operator bool() const { return single || multi; }
};

/// Whether gradients flow through an op (the grad column of ops.def).
enum class GradKind : uint8_t { Diff, NoGrad };

/// The kinds of attribute value an op can declare (the alternatives of Attr).
enum class AttrKind : uint8_t { Bool, Int, Float, String, Dims, Dim };
/// `bool`, `int`, `float`, `string`, `dims` or `dim` (one dim: `4`, `T-2`), as
/// written in ops.def.
const char *attrKindName(AttrKind k);

/// One attribute an op declares in its ops.def attribute spec.
struct AttrSpec {
  std::string name;
  AttrKind kind;
  /// The value an absent attribute has; none for a required attribute.
  std::optional<Attr> dflt;

  bool required() const { return !dflt; }
  /// `name: kind` or `name: kind = default`, the default as the IR prints it.
  std::string str() const;
};

/// Parses an ops.def attribute spec (`"axis: int = -1; keepdim: bool = false"`,
/// `""` for none); throws std::invalid_argument naming the problem. The table
/// parses every op's spec on first use and aborts on a malformed one.
std::vector<AttrSpec> parseAttrSpec(const std::string &spec);

struct OpInfo {
  OpKind kind;
  const char *name;
  int minOperands;
  int maxOperands;
  ShapeRules shapeRule;
  GradKind grad;
  /// The attribute spec as written in ops.def, and parsed.
  const char *attrSpec;
  const char *summary;
  std::vector<AttrSpec> attrs;

  /// Elementwise: its shape rule is one of the arithmetic, unary or
  /// unary-gradient rules, so each result element depends only on the
  /// operand elements at the same (broadcast) position. Derived from the
  /// table; the ops an `elementwise` body may use (ir/elementwise.h).
  bool elementwise = false;

  bool differentiable() const { return grad == GradKind::Diff; }
  /// Whether the op has several results (its rule is a MultiShapeRule).
  bool multiResult() const { return shapeRule.multi != nullptr; }
};

/// The op table, indexed by OpKind.
const std::vector<OpInfo> &allOps();
const OpInfo &opInfo(OpKind k);
inline const char *opName(OpKind k) { return opInfo(k).name; }
std::optional<OpKind> opByName(const std::string &name);

/// The declaration of attribute `name` of op k, or null when k has none of that name.
const AttrSpec *findAttrSpec(OpKind k, const std::string &name);

/// Throws kiln::Error unless op k declares attribute `name` and `value` has
/// its kind (an integer is accepted where a float is declared). The message
/// suggests the nearest declared name for a misspelt one.
void checkAttr(OpKind k, const std::string &name, const Attr &value);
/// checkAttr for every attribute, then throws kiln::Error for a required
/// attribute that is missing.
void checkAttrs(OpKind k, const Attrs &attrs);

/// Checks the operand count and the attributes (checkAttrs), then runs the
/// op's shape rule; the types of all results.
std::vector<TensorType> inferTypes(OpKind k, const std::vector<TensorType> &operands, const Attrs &attrs);
/// inferTypes for an op with one result.
TensorType inferType(OpKind k, const std::vector<TensorType> &operands, const Attrs &attrs);

/// attrs with every attribute the op declares a default for filled in, and
/// integers converted where a float is declared: what shape rules see, and
/// the form in which two nodes' attributes compare equal (cse).
Attrs withDefaults(OpKind k, const Attrs &attrs);

// An op's attributes: the node's value, or the default ops.def declares when
// it is absent (so ops.def is the one place a default is written). With empty
// attrs they give the op's default. A missing required attribute or a value of
// the wrong kind throws kiln::Error; reading an attribute the op does not
// declare, or as another kind, is a programming error and aborts.
bool attrBool(OpKind op, const Attrs &a, const std::string &name);
int64_t attrInt(OpKind op, const Attrs &a, const std::string &name);
/// An integer value is converted.
double attrFloat(OpKind op, const Attrs &a, const std::string &name);
std::string attrString(OpKind op, const Attrs &a, const std::string &name);
Shape attrDims(OpKind op, const Attrs &a, const std::string &name);
/// An integer value is a constant dim.
Dim attrDim(OpKind op, const Attrs &a, const std::string &name);

/// The `axis` attribute of softmax, log_softmax, reductions and their
/// gradients; absent means ops.def's default for axis (the last axis, -1),
/// which every op that declares an axis shares (the table checks that), so a
/// pass that copies an axis and a backend that reads one agree on a node
/// written without it.
int64_t axisAttr(const Attrs &a);

// Attributes that no op declares (a parameter's initialiser: init, std,
// bound, mean); a missing attribute yields `dflt`, a wrong kind throws
// kiln::Error. An op's attributes are read with the OpKind overloads above.
bool attrBool(const Attrs &a, const std::string &name, bool dflt);
int64_t attrInt(const Attrs &a, const std::string &name, int64_t dflt);
double attrFloat(const Attrs &a, const std::string &name, double dflt);
std::string attrString(const Attrs &a, const std::string &name, const std::string &dflt);
Shape attrDims(const Attrs &a, const std::string &name);
bool hasAttr(const Attrs &a, const std::string &name);

/// Resolves a possibly negative axis against a rank; throws when out of range.
int64_t normalizeAxis(int64_t axis, size_t rank);

} // namespace kiln::ir
