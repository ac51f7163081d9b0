//===- ir/builder.cpp - the embedded C++ API for building graphs ----------===//
//
// Every op goes through create(), which runs the shape rule and attaches the
// current location to any error; see builder.h.
//
//===----------------------------------------------------------------------===//
#include "ir/builder.h"

#include <cmath>
#include <numbers>
#include <fmt/format.h>

namespace kiln::ir {

ValueId Builder::input(const std::string &name, TensorType type) {
  if (g_.findInput(name) >= 0) throw Error(fmt::format("input '{}' is declared twice", name), loc_);
  if (auto tooLarge = typeTooLarge(fmt::format("input '{}'", name), type)) throw Error(*tooLarge, loc_);
  return g_.addInput(name, std::move(type));
}

ValueId Builder::param(const std::string &name, TensorType type, Attrs init) {
  ValueId existing = g_.findParam(name);
  if (existing >= 0) {
    if (!(g_.type(existing) == type))
      throw Error(fmt::format("parameter '{}' is {} here but {} elsewhere", name, type.str(),
                              g_.type(existing).str()),
                  loc_);
    return existing;
  }
  for (const Dim &d : type.shape)
    if (d.isSymbolic() || d.value <= 0)
      throw Error(fmt::format("parameter '{}' must have positive constant dims, got {}", name, type.str()), loc_);
  if (auto tooLarge = typeTooLarge(fmt::format("parameter '{}'", name), type)) throw Error(*tooLarge, loc_);
  return g_.addParam(name, std::move(type), std::move(init));
}

void Builder::output(const std::string &name, ValueId v) {
  for (const Output &o : g_.outputs())
    if (o.name == name) throw Error(fmt::format("output '{}' is defined twice", name), loc_);
  g_.addOutput(name, v);
}

ValueId Builder::create(OpKind op, std::vector<ValueId> operands, Attrs attrs, std::string name) {
  if (opInfo(op).multiResult())
    throw Error(fmt::format("{} has several results: build it with createMulti", opName(op)), loc_);
  std::vector<ValueId> r = build(op, std::move(operands), std::move(attrs), {std::move(name)});
  return r.front();
}

std::vector<ValueId> Builder::createMulti(OpKind op, std::vector<ValueId> operands, Attrs attrs) {
  return build(op, std::move(operands), std::move(attrs), {});
}

std::vector<ValueId> Builder::build(OpKind op, std::vector<ValueId> operands, Attrs attrs, std::vector<std::string> names) {
  std::vector<TensorType> types;
  types.reserve(operands.size());
  for (ValueId v : operands) types.push_back(g_.type(v));
  std::vector<TensorType> results;
  try {
    results = inferTypes(op, types, attrs);
  } catch (const Error &e) {
    if (e.loc().known()) throw;
    throw Error(e.message(), loc_);
  }
  std::vector<SourceLoc> locs;
  if (loc_.known() || !loc_.file.empty()) locs.push_back(loc_);
  return g_.addMultiNode(op, std::move(operands), std::move(attrs), std::move(results), std::move(locs),
                         std::move(names));
}

ValueId Builder::constant(double value, DType dtype) {
  return create(OpKind::Constant, {}, {{"value", value}, {"dtype", std::string(dtypeName(dtype))}});
}

ValueId Builder::embedding(ValueId table, ValueId ids) { return create(OpKind::Embedding, {table, ids}); }

ValueId Builder::matmul(ValueId a, ValueId b, bool transposeA, bool transposeB) {
  Attrs attrs;
  if (transposeA) attrs["transpose_a"] = true;
  if (transposeB) attrs["transpose_b"] = true;
  return create(OpKind::MatMul, {a, b}, std::move(attrs));
}

ValueId Builder::softmax(ValueId x, int64_t axis, std::optional<ValueId> mask) {
  std::vector<ValueId> ops{x};
  if (mask) ops.push_back(*mask);
  return create(OpKind::Softmax, ops, {{"axis", axis}});
}

ValueId Builder::logSoftmax(ValueId x, int64_t axis, std::optional<ValueId> mask) {
  std::vector<ValueId> ops{x};
  if (mask) ops.push_back(*mask);
  return create(OpKind::LogSoftmax, ops, {{"axis", axis}});
}

ValueId Builder::reduce(OpKind op, ValueId x, int64_t axis, std::optional<ValueId> mask, bool keepdim) {
  std::vector<ValueId> ops{x};
  if (mask) ops.push_back(*mask);
  Attrs attrs{{"axis", axis}};
  if (keepdim) attrs["keepdim"] = true;
  return create(op, ops, std::move(attrs));
}

ValueId Builder::sum(ValueId x, int64_t axis, std::optional<ValueId> mask, bool keepdim) {
  return reduce(OpKind::Sum, x, axis, mask, keepdim);
}
ValueId Builder::mean(ValueId x, int64_t axis, std::optional<ValueId> mask, bool keepdim) {
  return reduce(OpKind::Mean, x, axis, mask, keepdim);
}
ValueId Builder::max(ValueId x, int64_t axis, std::optional<ValueId> mask, bool keepdim) {
  return reduce(OpKind::Max, x, axis, mask, keepdim);
}

ValueId Builder::reshape(ValueId x, Shape shape) { return create(OpKind::Reshape, {x}, {{"shape", shape}}); }

ValueId Builder::transpose(ValueId x, std::vector<int64_t> perm) {
  Shape dims;
  for (int64_t p : perm) dims.push_back(Dim::constant(p));
  return create(OpKind::Transpose, {x}, {{"perm", dims}});
}

ValueId Builder::swapDims(ValueId x, int64_t d0, int64_t d1) {
  size_t rank = g_.type(x).rank();
  try {
    d0 = normalizeAxis(d0, rank);
    d1 = normalizeAxis(d1, rank);
  } catch (const Error &e) {
    throw Error(fmt::format("transpose of {}: {}", g_.type(x).str(), e.message()), loc_);
  }
  std::vector<int64_t> perm(rank);
  for (size_t i = 0; i < rank; ++i) perm[i] = static_cast<int64_t>(i);
  std::swap(perm[d0], perm[d1]);
  return transpose(x, perm);
}

ValueId Builder::unsqueeze(ValueId x, int64_t dim) {
  Shape s = g_.type(x).shape;
  int64_t r = static_cast<int64_t>(s.size());
  if (dim < -(r + 1) || dim > r)
    throw Error(fmt::format("unsqueeze of {}: dim {} is out of range", g_.type(x).str(), dim), loc_);
  if (dim < 0) dim += r + 1;
  s.insert(s.begin() + dim, Dim::constant(1));
  return reshape(x, s);
}

ValueId Builder::compare(OpKind cmp, ValueId a, ValueId b) { return create(cmp, {a, b}); }

ValueId Builder::sumTo(ValueId x, Shape shape) {
  if (g_.type(x).shape == shape) return x;
  return create(OpKind::SumTo, {x}, {{"shape", shape}});
}

ValueId Builder::cast(ValueId x, DType to) {
  return create(OpKind::Cast, {x}, {{"dtype", std::string(dtypeName(to))}});
}

ValueId Builder::embeddingParams(const std::string &prefix, int64_t num, int64_t dim, double std) {
  // nn.Embedding initialises its table from N(0, 1).
  return param(prefix + ".weight", {DType::F32, {Dim::constant(num), Dim::constant(dim)}},
               {{"init", std::string("normal")}, {"std", std}});
}

std::pair<ValueId, ValueId> Builder::linearParams(const std::string &prefix, int64_t in, int64_t out, bool bias) {
  // nn.Linear's kaiming_uniform_(a=sqrt(5)) and its bias rule both come to
  // U(-1/sqrt(in), 1/sqrt(in)).
  Attrs init{{"init", std::string("uniform")}, {"bound", 1.0 / std::sqrt(static_cast<double>(in))}};
  ValueId w = param(prefix + ".weight", {DType::F32, {Dim::constant(out), Dim::constant(in)}}, init);
  ValueId b = bias ? param(prefix + ".bias", {DType::F32, {Dim::constant(out)}}, init) : -1;
  return {w, b};
}

ValueId Builder::embeddingLayer(const std::string &prefix, ValueId ids, int64_t num, int64_t dim) {
  return embedding(embeddingParams(prefix, num, dim), ids);
}

ValueId Builder::linearLayer(const std::string &prefix, ValueId x, int64_t in, int64_t out, bool bias) {
  const TensorType &xt = g_.type(x);
  if (xt.rank() == 0 || !(xt.shape.back() == Dim::constant(in)))
    throw Error(fmt::format("{}: Linear({}, {}) cannot take {}: last dim must be {}", prefix, in, out,
                            xt.str(), in),
                loc_);
  auto [w, b] = linearParams(prefix, in, out, bias);
  ValueId y = matmul(x, w, false, true);
  return bias ? add(y, b) : y;
}

std::pair<ValueId, ValueId> Builder::layerNormParams(const std::string &prefix, int64_t dim, bool affine) {
  if (!affine) return {-1, -1};
  TensorType t{DType::F32, {Dim::constant(dim)}};
  return {param(prefix + ".weight", t, {{"init", std::string("ones")}}),
          param(prefix + ".bias", t, {{"init", std::string("zeros")}})};
}

ValueId Builder::layerNormLayer(const std::string &prefix, ValueId x, int64_t dim, double eps, bool affine) {
  const TensorType &xt = g_.type(x);
  if (xt.rank() == 0 || !(xt.shape.back() == Dim::constant(dim)))
    throw Error(fmt::format("{}: LayerNorm({}) cannot take {}: last dim must be {}", prefix, dim, xt.str(), dim), loc_);
  auto [w, b] = layerNormParams(prefix, dim, affine);
  ValueId centred = sub(x, mean(x, -1, std::nullopt, /*keepdim=*/true));
  ValueId variance = mean(mul(centred, centred), -1, std::nullopt, /*keepdim=*/true);
  ValueId y = div(centred, sqrt(add(variance, constant(eps))));
  return affine ? add(mul(y, w), b) : y;
}

ValueId Builder::gelu(ValueId x, bool approximate) {
  ValueId inner = approximate ? tanh(mul(add(x, mul(mul(mul(x, x), x), constant(0.044715))),
                                         constant(std::sqrt(2.0 / std::numbers::pi))))
                              : create(OpKind::Erf, {mul(x, constant(1.0 / std::sqrt(2.0)))});
  return mul(mul(x, constant(0.5)), add(inner, constant(1.0)));
}

ValueId Builder::concat(const std::vector<ValueId> &pieces, int64_t axis) {
  if (pieces.empty()) throw Error("concat needs at least one piece", loc_);
  const TensorType first = g_.type(pieces[0]);
  if (first.rank() == 0) throw Error("concat joins tensors along a dim; a scalar has none", loc_);
  axis = normalizeAxis(axis, first.rank());
  int64_t total = 0;
  std::vector<int64_t> offsets;
  for (size_t k = 0; k < pieces.size(); ++k) {
    TensorType t = g_.type(pieces[k]);
    bool sameRank = t.rank() == first.rank();
    Shape others = t.shape, firstOthers = first.shape;
    if (sameRank) others.erase(others.begin() + axis), firstOthers.erase(firstOthers.begin() + axis);
    if (t.dtype != DType::F32 || !sameRank || !(others == firstOthers) || t.shape[static_cast<size_t>(axis)].isSymbolic())
      throw Error(fmt::format("cat: piece {} is {} but the first is {}; pieces are f32 and differ only in dim {}, "
                              "of constant extent",
                              k + 1, t.str(), first.str(), axis),
                  loc_);
    offsets.push_back(total);
    total += t.shape[static_cast<size_t>(axis)].value;
  }
  if (pieces.size() == 1) return pieces[0];
  ValueId joined = -1;
  for (size_t k = 0; k < pieces.size(); ++k) {
    ValueId placed = create(OpKind::SliceGrad, {pieces[k]}, {{"axis", axis}, {"start", offsets[k]}, {"size", total}});
    joined = joined < 0 ? placed : add(joined, placed);
  }
  return joined;
}

void Builder::recurrentParams(const std::string &prefix, const RecurrentSpec &spec) {
  Attrs init{{"init", std::string("uniform")}, {"bound", 1.0 / std::sqrt(static_cast<double>(spec.hidden))}};
  auto f32 = [](std::vector<int64_t> d) {
    Shape s;
    for (int64_t v : d) s.push_back(Dim::constant(v));
    return TensorType{DType::F32, s};
  };
  int64_t gates = (spec.lstm ? 4 : 3) * spec.hidden, directions = spec.bidirectional ? 2 : 1;
  for (int64_t layer = 0; layer < spec.layers; ++layer)
    for (int64_t d = 0; d < directions; ++d) {
      std::string suffix = fmt::format("_l{}{}", layer, d ? "_reverse" : "");
      int64_t in = layer == 0 ? spec.in : spec.hidden * directions;
      param(prefix + ".weight_ih" + suffix, f32({gates, in}), init);
      param(prefix + ".weight_hh" + suffix, f32({gates, spec.hidden}), init);
      param(prefix + ".bias_ih" + suffix, f32({gates}), init);
      param(prefix + ".bias_hh" + suffix, f32({gates}), init);
    }
}

ValueId Builder::recurrentLayer(const std::string &prefix, ValueId x, ValueId keep, const RecurrentSpec &spec) {
  const TensorType &xt = g_.type(x);
  if (xt.rank() != 3 || !(xt.shape[2] == Dim::constant(spec.in)))
    throw Error(fmt::format("{}: {}({}, {}) cannot take {}: it needs [B, T, {}]", prefix, spec.lstm ? "LSTM" : "GRU",
                            spec.in, spec.hidden, xt.str(), spec.in),
                loc_);
  TensorType steps{DType::Bool, {xt.shape[0], xt.shape[1]}};
  if (keep >= 0 && !(g_.type(keep) == steps))
    throw Error(fmt::format("{}: the mask must be {} for the input {}, got {}", prefix, steps.str(), xt.str(),
                            g_.type(keep).str()),
                loc_);
  recurrentParams(prefix, spec);
  ValueId keepColumn = keep >= 0 ? unsqueeze(keep, -1) : -1;
  ValueId input = x;
  for (int64_t layer = 0; layer < spec.layers; ++layer) {
    std::vector<ValueId> directions;
    for (int64_t d = 0; d < (spec.bidirectional ? 2 : 1); ++d) {
      std::string suffix = fmt::format("_l{}{}", layer, d ? "_reverse" : "");
      auto weight = [&](const char *name) { return g_.findParam(prefix + "." + name + suffix); }; // recurrentParams made them
      ValueId xp = add(matmul(input, weight("weight_ih"), false, true), weight("bias_ih"));
      std::vector<ValueId> operands{xp, weight("weight_hh"), weight("bias_hh")};
      if (keep >= 0) operands.push_back(keep);
      ValueId h = createMulti(spec.lstm ? OpKind::Lstm : OpKind::Gru, operands, {{"reverse", d == 1}})[0];
      // Packed sequences give 0 after a text's end.
      directions.push_back(keep >= 0 ? select(keepColumn, h, constant(0.0)) : h);
    }
    input = concat(directions, -1);
  }
  return input;
}

std::pair<ValueId, ValueId> Builder::conv1dParams(const std::string &prefix, const Conv1dSpec &spec) {
  // kaiming_uniform_(a=sqrt(5)) over fan_in = in * width, and the bias rule,
  // come to U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as for nn.Linear.
  Attrs init{{"init", std::string("uniform")},
             {"bound", 1.0 / std::sqrt(static_cast<double>(spec.in * spec.width))}};
  ValueId w = param(prefix + ".weight",
                    {DType::F32, {Dim::constant(spec.out), Dim::constant(spec.in), Dim::constant(spec.width)}}, init);
  ValueId b = spec.bias ? param(prefix + ".bias", {DType::F32, {Dim::constant(spec.out)}}, init) : -1;
  return {w, b};
}

ValueId Builder::conv1dLayer(const std::string &prefix, ValueId x, ValueId keep, const Conv1dSpec &spec) {
  const TensorType &xt = g_.type(x);
  if (xt.rank() < 2 || !(xt.shape.back() == Dim::constant(spec.in)))
    throw Error(fmt::format("{}: Conv1d({}, {}, {}) cannot take {}: it needs [..., T, {}] (channels last)", prefix,
                            spec.in, spec.out, spec.width, xt.str(), spec.in),
                loc_);
  if (keep >= 0) {
    TensorType kt = g_.type(keep);
    Shape positions(xt.shape.begin(), xt.shape.end() - 1);
    if (kt.dtype == DType::Bool && kt.shape == positions) keep = unsqueeze(keep, -1), kt = g_.type(keep);
    Shape column = positions;
    column.push_back(Dim::constant(1));
    if (kt.dtype != DType::Bool || !(kt.shape == column))
      throw Error(fmt::format("{}: the mask must be bool{} (or with a last dim of 1) for the input {}, got {}", prefix,
                              shapeStr(positions), xt.str(), kt.str()),
                  loc_);
    x = select(keep, x, constant(0.0));
  }
  auto [w, b] = conv1dParams(prefix, spec);
  Attrs attrs{{"padding", spec.padding}};
  return b >= 0 ? create(OpKind::Conv1d, {x, w, b}, attrs) : create(OpKind::Conv1d, {x, w}, attrs);
}

void Builder::multiheadAttentionParams(const std::string &prefix, int64_t embed) {
  auto f32 = [](std::vector<int64_t> d) {
    Shape s;
    for (int64_t v : d) s.push_back(Dim::constant(v));
    return TensorType{DType::F32, s};
  };
  Attrs zeros{{"init", std::string("zeros")}};
  // xavier_uniform_ over [3E, E]: bound sqrt(6 / (fan_in + fan_out)).
  param(prefix + ".in_proj_weight", f32({3 * embed, embed}),
        {{"init", std::string("uniform")}, {"bound", std::sqrt(6.0 / static_cast<double>(4 * embed))}});
  param(prefix + ".in_proj_bias", f32({3 * embed}), zeros);
  param(prefix + ".out_proj.weight", f32({embed, embed}),
        {{"init", std::string("uniform")}, {"bound", 1.0 / std::sqrt(static_cast<double>(embed))}});
  param(prefix + ".out_proj.bias", f32({embed}), zeros);
}

ValueId Builder::multiheadAttentionLayer(const std::string &prefix, ValueId query, ValueId key, ValueId value,
                                         ValueId keep, int64_t embed, int64_t heads) {
  if (heads <= 0 || embed % heads != 0)
    throw Error(fmt::format("{}: MultiheadAttention({}, {}): embed_dim must be a multiple of num_heads", prefix, embed,
                            heads),
                loc_);
  for (ValueId v : {query, key, value}) {
    const TensorType &t = g_.type(v);
    if (t.rank() != 3 || !(t.shape[2] == Dim::constant(embed)))
      throw Error(fmt::format("{}: MultiheadAttention({}, {}) takes [B, T, {}] inputs, got {}", prefix, embed, heads,
                              embed, t.str()),
                  loc_);
  }
  multiheadAttentionParams(prefix, embed);
  ValueId w = g_.findParam(prefix + ".in_proj_weight"), bias = g_.findParam(prefix + ".in_proj_bias");
  int64_t d = embed / heads;
  // One third of the packed projection each, then [B, T, h, d] -> [B, h, T, d].
  auto project = [&](ValueId x, int64_t part) {
    ValueId wp = create(OpKind::Slice, {w}, {{"axis", int64_t(0)}, {"start", part * embed}, {"size", embed}});
    ValueId bp = create(OpKind::Slice, {bias}, {{"axis", int64_t(0)}, {"start", part * embed}, {"size", embed}});
    ValueId y = add(matmul(x, wp, false, true), bp);
    const Shape &s = g_.type(x).shape;
    return transpose(reshape(y, {s[0], s[1], Dim::constant(heads), Dim::constant(d)}), {0, 2, 1, 3});
  };
  ValueId q = project(query, 0), k = project(key, 1), v = project(value, 2);
  ValueId scores = mul(matmul(q, k, false, true), constant(1.0 / std::sqrt(static_cast<double>(d))));
  std::optional<ValueId> mask;
  if (keep >= 0) {
    const Shape &s = g_.type(keep).shape;
    mask = reshape(keep, {s[0], Dim::constant(1), Dim::constant(1), s[1]});
  }
  ValueId mixed = matmul(softmax(scores, -1, mask), v); // [B, h, Tq, d]
  const Shape &qs = g_.type(query).shape;
  ValueId merged = reshape(transpose(mixed, {0, 2, 1, 3}), {qs[0], qs[1], Dim::constant(embed)});
  ValueId ow = g_.findParam(prefix + ".out_proj.weight"), ob = g_.findParam(prefix + ".out_proj.bias");
  return add(matmul(merged, ow, false, true), ob);
}

} // namespace kiln::ir
