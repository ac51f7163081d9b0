//===- tests/unit/op_attrs_test.cpp - the attribute column of the op table -===//
//
// Every op's attribute spec in ir/ops.def parses; malformed specs are
// rejected with the reason; checkAttrs rejects unknown (with a suggestion
// for a misspelt name), wrongly kinded and missing required attributes; the
// OpKind accessors return the declared defaults; the builder, verifier and
// the graphs that lowering, autodiff and the training step produce carry
// declared attributes only.
//
//===----------------------------------------------------------------------===//
#include "frontend/lower.h"
#include "ir/builder.h"
#include "ir/verifier.h"
#include "op_samples.h"
#include "passes/training.h"

#include <doctest/doctest.h>
#include <set>
#include <stdexcept>

using namespace kiln;
using namespace kiln::ir;
using namespace kiln::testing;

namespace {

std::string errorOf(OpKind k, const Attrs &attrs) {
  try {
    checkAttrs(k, attrs);
  } catch (const Error &e) {
    return e.message();
  }
  return "";
}

std::string specError(const std::string &spec) {
  try {
    parseAttrSpec(spec);
  } catch (const std::invalid_argument &e) {
    return e.what();
  }
  return "";
}

/// Whether a value holds the alternative of a kind (AttrKind follows Attr's order).
bool holdsKind(const Attr &v, AttrKind k) { return v.index() == static_cast<size_t>(k); }

} // namespace

TEST_CASE("every op's attribute spec parses into OpInfo::attrs") {
  for (const OpInfo &op : allOps()) {
    CAPTURE(op.name);
    CAPTURE(op.attrSpec);
    std::vector<AttrSpec> parsed;
    REQUIRE_NOTHROW(parsed = parseAttrSpec(op.attrSpec));
    REQUIRE(parsed.size() == op.attrs.size());
    std::set<std::string> names;
    for (size_t i = 0; i < parsed.size(); ++i) {
      const AttrSpec &a = op.attrs[i];
      CAPTURE(a.name);
      CHECK(parsed[i].name == a.name);
      CHECK(parsed[i].kind == a.kind);
      CHECK(parsed[i].dflt == a.dflt);
      CHECK(names.insert(a.name).second);
      CHECK(findAttrSpec(op.kind, a.name) == &a);
      if (a.dflt) CHECK(holdsKind(*a.dflt, a.kind));
    }
    CHECK(findAttrSpec(op.kind, "no_such_attribute") == nullptr);
  }
}

TEST_CASE("the attribute specs of a few ops, as declared") {
  const std::vector<AttrSpec> &mm = opInfo(OpKind::MatMul).attrs;
  REQUIRE(mm.size() == 2);
  CHECK(mm[0].str() == "transpose_a: bool = false");
  CHECK(mm[1].str() == "transpose_b: bool = false");
  const std::vector<AttrSpec> &reshape = opInfo(OpKind::Reshape).attrs;
  REQUIRE(reshape.size() == 1);
  CHECK(reshape[0].str() == "shape: dims");
  CHECK(reshape[0].required());
  const std::vector<AttrSpec> &constant = opInfo(OpKind::Constant).attrs;
  REQUIRE(constant.size() == 2);
  CHECK(constant[0].str() == "value: float = 0.0");
  CHECK(constant[1].str() == "dtype: string = \"f32\"");
  CHECK(opInfo(OpKind::Add).attrs.empty());
  const AttrSpec *eps = findAttrSpec(OpKind::AdamUpdate, "eps");
  REQUIRE(eps);
  CHECK(eps->dflt == Attr(1e-8));
}

TEST_CASE("parseAttrSpec reads every kind and its defaults") {
  auto specs = parseAttrSpec("  a: bool = true;b:int=-3 ; c: float = 2.5; d: float = 1; e: string = f32; f: dims; "
                             "g: dims = [2, B]; h: dims = []");
  REQUIRE(specs.size() == 8);
  CHECK(specs[0].dflt == Attr(true));
  CHECK(specs[1].dflt == Attr(int64_t(-3)));
  CHECK(specs[2].dflt == Attr(2.5));
  CHECK(specs[3].dflt == Attr(1.0)); // a float default is a double even when written as an integer
  CHECK(specs[4].dflt == Attr(std::string("f32")));
  CHECK(specs[5].kind == AttrKind::Dims);
  CHECK(specs[5].required());
  CHECK(specs[6].dflt == Attr(Shape{Dim::constant(2), Dim::named("B")}));
  CHECK(specs[7].dflt == Attr(Shape{}));
  CHECK(parseAttrSpec("").empty());
  CHECK(parseAttrSpec("   ").empty());
}

TEST_CASE("parseAttrSpec rejects malformed specs with the reason") {
  CHECK(specError("axis") == "'axis' is not 'name: kind' or 'name: kind = default'");
  CHECK(specError("axis: integer") == "unknown kind 'integer' for 'axis' (expected bool, int, float, string or dims)");
  CHECK(specError("axis: int; axis: int") == "attribute 'axis' is declared twice");
  CHECK(specError("axis: int;") == "empty entry (a stray ';')");
  CHECK(specError("axis: int;; keepdim: bool") == "empty entry (a stray ';')");
  CHECK(specError("Axis: int") == "'Axis' is not an attribute name");
  CHECK(specError("2x: int") == "'2x' is not an attribute name");
  CHECK(specError(": int") == "'' is not an attribute name");
  CHECK(specError("axis: int =") == "'axis' has '=' but no default");
  CHECK(specError("axis: int = x") == "default 'x' is not an int");
  CHECK(specError("axis: int = 1.5") == "default '1.5' is not an int");
  CHECK(specError("k: bool = 1") == "default '1' is not a bool");
  CHECK(specError("v: float = fast") == "default 'fast' is not a float");
  CHECK(specError("s: string = \"f32\"") == "write a string default without quotes");
  CHECK(specError("d: dims = 3") == "default '3' is not a dim list");
  CHECK(specError("d: dims = [3, -1]") == "default '[3, -1]' is not a dim list");
  CHECK(specError("d: dims = [3,]") == "default '' is not an int");
  CHECK(specError("d: dims = [B-1]") == "default '[B-1]' is not a dim list");
}

TEST_CASE("checkAttrs rejects unknown, misspelt, wrongly kinded and missing attributes") {
  CHECK(errorOf(OpKind::MatMul, {{"tranpose_b", true}}) ==
        "matmul has no attribute 'tranpose_b'; did you mean 'transpose_b'? (its attributes: transpose_a, transpose_b)");
  CHECK(errorOf(OpKind::MatMul, {{"bias", true}}) ==
        "matmul has no attribute 'bias' (its attributes: transpose_a, transpose_b)");
  CHECK(errorOf(OpKind::Add, {{"axis", int64_t(0)}}) == "add has no attribute 'axis' (it takes none)");
  CHECK(errorOf(OpKind::Softmax, {{"axis", true}}) == "softmax: attribute 'axis' must be an int, got a bool");
  CHECK(errorOf(OpKind::Softmax, {{"axis", 1.0}}) == "softmax: attribute 'axis' must be an int, got a float");
  CHECK(errorOf(OpKind::Reshape, {{"shape", int64_t(3)}}) ==
        "reshape: attribute 'shape' must be a dim list, got an int");
  CHECK(errorOf(OpKind::Cast, {{"dtype", Shape{}}}) == "cast: attribute 'dtype' must be a string, got a dim list");
  CHECK(errorOf(OpKind::Reshape, {}) == "reshape needs attribute 'shape' (a dim list)");
  CHECK(errorOf(OpKind::EmbeddingGrad, {}) == "embedding_grad needs attribute 'rows' (an int)");
  CHECK(errorOf(OpKind::SumGrad, {{"axis", int64_t(1)}}) == "sum_grad needs attribute 'shape' (a dim list)");
  // An integer is a float, as attrFloat always allowed; optional attributes may be left out.
  CHECK(errorOf(OpKind::AdamMoment, {{"beta", int64_t(1)}}) == "");
  CHECK(errorOf(OpKind::AdamMoment, {}) == "");
  CHECK(errorOf(OpKind::Softmax, {}) == "");
  // One attribute at a time, as the IR parser checks them.
  CHECK_NOTHROW(checkAttr(OpKind::MatMul, "transpose_a", true));
  CHECK_THROWS_WITH_AS(checkAttr(OpKind::Max, "keep_dim", true),
                       "max has no attribute 'keep_dim'; did you mean 'keepdim'? (its attributes: axis, keepdim)",
                       Error);
}

TEST_CASE("every sample node of the op-table test has declared attributes") {
  for (const OpInfo &op : allOps()) {
    CAPTURE(op.name);
    auto it = samples().find(op.kind);
    REQUIRE(it != samples().end());
    CHECK(errorOf(op.kind, it->second.attrs) == "");
  }
}

TEST_CASE("inferType checks attributes before the shape rule runs") {
  TensorType x{DType::F32, {Dim::constant(2), Dim::constant(3)}};
  CHECK_THROWS_WITH_AS(inferType(OpKind::MatMul, {x, x}, {{"tranpose_b", true}}),
                       doctest::Contains("did you mean 'transpose_b'?"), Error);
  CHECK_THROWS_WITH_AS(inferType(OpKind::Reshape, {x}, {}), "reshape needs attribute 'shape' (a dim list)", Error);
  // A float attribute written as an integer reaches the rule and the kernels as a number.
  CHECK(inferType(OpKind::AdamMoment, {x, x}, {{"beta", int64_t(0)}}) == x);
}

TEST_CASE("the OpKind accessors return the node's value or the declared default") {
  for (const OpInfo &op : allOps()) {
    for (const AttrSpec &a : op.attrs) {
      CAPTURE(op.name);
      CAPTURE(a.name);
      if (!a.dflt) continue;
      switch (a.kind) {
      case AttrKind::Bool: CHECK(Attr(attrBool(op.kind, {}, a.name)) == *a.dflt); break;
      case AttrKind::Int: CHECK(Attr(attrInt(op.kind, {}, a.name)) == *a.dflt); break;
      case AttrKind::Float: CHECK(Attr(attrFloat(op.kind, {}, a.name)) == *a.dflt); break;
      case AttrKind::String: CHECK(Attr(attrString(op.kind, {}, a.name)) == *a.dflt); break;
      case AttrKind::Dims: CHECK(Attr(attrDims(op.kind, {}, a.name)) == *a.dflt); break;
      }
    }
  }
  CHECK(attrBool(OpKind::MatMul, {{"transpose_b", true}}, "transpose_b"));
  CHECK_FALSE(attrBool(OpKind::MatMul, {{"transpose_b", true}}, "transpose_a"));
  CHECK(attrFloat(OpKind::AdamMoment, {{"beta", int64_t(1)}}, "beta") == 1.0);
  CHECK(attrInt(OpKind::EmbeddingGrad, {{"rows", int64_t(7)}}, "rows") == 7);
  CHECK(attrString(OpKind::Constant, {}, "dtype") == "f32");
  CHECK(attrDims(OpKind::Reshape, {{"shape", Shape{Dim::named("B")}}}, "shape") == Shape{Dim::named("B")});
  CHECK_THROWS_WITH_AS(attrDims(OpKind::Reshape, {}, "shape"), "reshape needs attribute 'shape' (a dim list)", Error);
  CHECK_THROWS_WITH_AS(attrBool(OpKind::MatMul, {{"transpose_a", int64_t(1)}}, "transpose_a"),
                       "matmul: attribute 'transpose_a' must be a bool, got an int", Error);
}

TEST_CASE("axisAttr's default is the one every op that declares an axis has") {
  int n = 0;
  for (const OpInfo &op : allOps())
    if (const AttrSpec *axis = findAttrSpec(op.kind, "axis")) {
      CAPTURE(op.name);
      ++n;
      REQUIRE(axis->dflt);
      CHECK(*axis->dflt == Attr(axisAttr({})));
      CHECK(attrInt(op.kind, {}, "axis") == axisAttr({}));
    }
  CHECK(n > 0);
  CHECK(axisAttr({{"axis", int64_t(1)}}) == 1);
}

TEST_CASE("the builder and the verifier reject an undeclared attribute at its node") {
  Graph g("f");
  Builder b(g);
  b.setLoc({"m.kiln", 3, 7});
  ValueId x = b.input("x", {DType::F32, {Dim::constant(2), Dim::constant(3)}});
  try {
    b.create(OpKind::Softmax, {x}, {{"axsi", int64_t(0)}});
    FAIL("the builder accepted an undeclared attribute");
  } catch (const Error &e) {
    CHECK(e.message() == "softmax has no attribute 'axsi'; did you mean 'axis'? (its attributes: axis)");
    CHECK(e.loc() == SourceLoc{"m.kiln", 3, 7});
  }
  // A graph put together without the builder still meets the check in the verifier.
  ValueId y = g.addNode(OpKind::Relu, {x}, {{"axis", int64_t(0)}}, g.type(x), {{"m.kiln", 4, 9}}, "y");
  g.addOutput("y", y);
  try {
    verify(g);
    FAIL("the verifier accepted an undeclared attribute");
  } catch (const Error &e) {
    CHECK(e.message() == "@f: relu has no attribute 'axis' (it takes none)");
    CHECK(e.loc() == SourceLoc{"m.kiln", 4, 9});
  }
}

TEST_CASE("lowering, autodiff and the training step produce declared attributes only") {
  auto checkGraph = [](const Graph &g) {
    for (const Node &n : g.nodes()) {
      CAPTURE(opName(n.op));
      CHECK(errorOf(n.op, n.attrs) == "");
    }
  };
  using Kind = passes::OptimizerConfig::Kind;
  for (const char *model : {"classifier_additive", "classifier_attnpool", "classifier_sdpa"}) {
    CAPTURE(model);
    frontend::LowerOptions opts;
    opts.overrides = {{"vocab", "11"}, {"embed", "6"}, {"hidden", "5"}, {"classes", "3"}};
    auto lowered = frontend::compileFile(std::string(KILN_SOURCE_DIR) + "/examples/" + model + ".kiln", opts);
    const Graph &forward = *lowered.module.find("forward");
    checkGraph(forward);
    for (Kind kind : {Kind::Adam, Kind::AdamW, Kind::LazyAdam, Kind::Sgd}) {
      passes::OptimizerConfig config; // every optional step of the update on
      config.kind = kind;
      config.clipNorm = 1.0;
      config.momentum = kind == Kind::Sgd ? 0.9 : 0.0;
      config.weightDecay = 0.01;
      checkGraph(passes::buildTrainGraph(forward, config));
    }
  }
}
