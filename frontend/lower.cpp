//===- frontend/lower.cpp - from the DSL syntax tree to IR ----------------===//
//
// The algorithm:
//  1. Evaluate hyper-parameters in order, applying overrides.
//  2. Find the one `model`; instantiate its layer tree (Linear, Embedding,
//     LayerNorm and user modules, recursively), naming every layer by its
//     member path.
//  3. For each model function, make a graph: declare every parameter of the
//     layer tree in declaration order (the state_dict order), turn the typed
//     function parameters into graph inputs, and evaluate the body. Calls to
//     layers, module methods and free functions are inlined; builtins map to
//     ir::Builder calls. Compile-time numbers fold; a number meeting a tensor
//     becomes a scalar constant of the tensor's dtype.
//  4. Check declared output types and name the graph outputs.
//
//===----------------------------------------------------------------------===//
#include "frontend/lower.h"

#include "frontend/parser.h"
#include "ir/builder.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <cstring>
#include <sys/stat.h>
#include <fmt/format.h>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

namespace kiln::frontend {

namespace {

using ir::Builder;
using ir::DType;
using ir::Dim;
using ir::OpKind;
using ir::TensorType;
using ir::ValueId;

/// A value during lowering: a tensor in the graph or a compile-time number.
struct Val {
  enum class Kind { Tensor, Int, Float, Bool };
  Kind kind = Kind::Int;
  ValueId id = -1;
  double num = 0;

  static Val tensor(ValueId v) { return {Kind::Tensor, v, 0}; }
  static Val integer(double n) { return {Kind::Int, -1, n}; }
  static Val real(double n) { return {Kind::Float, -1, n}; }
  static Val boolean(bool b) { return {Kind::Bool, -1, b ? 1.0 : 0.0}; }
  bool isTensor() const { return kind == Kind::Tensor; }
  bool isNumber() const { return kind == Kind::Int || kind == Kind::Float; }
};

struct Instance;

/// The built-in layers, as a model declares them.
constexpr const char *kLayerNames[] = {"Linear", "Embedding", "LayerNorm", "MultiheadAttention", "TransformerEncoderLayer",
                                       "Conv1d", "GRU", "LSTM"};

/// One layer of the instantiated model.
struct Layer {
  enum class Kind { Linear, Embedding, LayerNorm, MultiheadAttention, TransformerEncoderLayer, Conv1d, Gru, Lstm, User };
  Kind kind;
  std::string path; ///< state_dict prefix: `attention.linear1`
  int64_t in = 0, out = 0; ///< Linear, Conv1d: in/out features; Embedding: num/dim; LayerNorm: dim (in); MultiheadAttention: embed/heads
  bool bias = true;        ///< Linear, Conv1d: a bias; LayerNorm: elementwise affine
  double eps = 1e-5;       ///< LayerNorm
  double initStd = 1;      ///< Embedding: its table starts as N(0, initStd)
  int64_t width = 0, padding = 0; ///< Conv1d: kernel_size, padding
  int64_t layers = 1;             ///< GRU, LSTM: num_layers
  bool bidirectional = false;     ///< GRU, LSTM
  /// TransformerEncoderLayer: d_model (in), nhead (out), dim_feedforward
  /// (width), layer_norm_eps (eps) and these.
  double dropout = 0.1;
  bool gelu = false, normFirst = false;
  std::unique_ptr<Instance> sub; ///< User
  SourceLoc loc;                 ///< the declaration, for errors about its parameters
};

/// An instantiated module: its declaration, argument values and layers.
struct Instance {
  const ModuleDecl *decl = nullptr;
  std::string path; ///< "" for the model itself
  std::map<std::string, Val> args;
  std::vector<std::pair<std::string, Layer>> layers; ///< declaration order

  Layer *findLayer(const std::string &name) {
    for (auto &[n, l] : layers)
      if (n == name) return &l;
    return nullptr;
  }
};

/// Argument specification of a builtin or layer: name and whether required.
struct ParamSpec {
  const char *name;
  bool required;
};

const char *kindName(const Val &v) {
  switch (v.kind) {
  case Val::Kind::Tensor: return "a tensor";
  case Val::Kind::Int: return "an integer";
  case Val::Kind::Float: return "a number";
  case Val::Kind::Bool: return "a bool";
  }
  return "a value";
}

/// A compile-time number that is whole: an integer, or a number such as
/// `dim / h` that folds to one (within the range a double holds exactly).
std::optional<int64_t> wholeNumber(const Val &v) {
  if (!v.isNumber() || !std::isfinite(v.num) || v.num != std::floor(v.num) || std::abs(v.num) > 9.0e15)
    return std::nullopt;
  return static_cast<int64_t>(v.num);
}

/// What an error says a value was: its kind, or a number's value.
std::string describe(const Val &v) { return v.isNumber() ? fmt::format("{}", v.num) : kindName(v); }

class Lowering {
public:
  Lowering(const Program &p, const LowerOptions &o) : prog_(p), opts_(o) {}

  LoweredModel run() {
    evalHyperParams();
    const ModuleDecl *model = nullptr;
    std::set<std::string> names;
    for (const ModuleDecl &m : prog_.modules) {
      if (!names.insert(m.name).second) throw Error(fmt::format("module '{}' is defined twice", m.name), m.loc);
      if (!m.isModel) continue;
      if (model)
        throw Error(fmt::format("a file holds one model; '{}' was already declared at line {}", model->name,
                                model->loc.line),
                    m.loc);
      model = &m;
    }
    for (const Function &f : prog_.functions)
      if (!names.insert(f.name).second) throw Error(fmt::format("'{}' is defined twice", f.name), f.loc);
    if (!model) throw Error("no 'model' declaration found; the model is what kiln compiles", {prog_.file, 1, 1});

    LoweredModel out;
    out.name = model->name;
    out.hyperParams = hyperOrder_;
    Instance root;
    root.decl = model;
    instantiate(root, 0);
    if (model->functions.empty()) throw Error(fmt::format("model '{}' has no functions", model->name), model->loc);
    std::set<std::string> fnNames;
    for (const Function &f : model->functions) {
      if (!fnNames.insert(f.name).second) throw Error(fmt::format("fn '{}' is defined twice", f.name), f.loc);
      lowerGraph(out.module, root, f);
    }
    return out;
  }

private:
  // --- hyper-parameters ------------------------------------------------------

  void evalHyperParams() {
    std::set<std::string> used;
    for (const auto &[name, text] : opts_.overrides) used.insert(name);
    for (const HyperParam &h : prog_.hyperParams) {
      if (hyper_.count(h.name)) throw Error(fmt::format("param '{}' is defined twice", h.name), h.loc);
      Val v;
      auto it = opts_.overrides.find(h.name);
      if (it != opts_.overrides.end()) {
        v = parseOverride(h.name, it->second);
        used.erase(h.name);
      } else {
        v = evalConst(*h.value, nullptr, "a param value");
      }
      hyper_[h.name] = v;
      hyperOrder_.push_back({h.name, v.num});
    }
    if (!used.empty()) {
      std::vector<std::string> known;
      for (const HyperParam &h : prog_.hyperParams) known.push_back(h.name);
      std::string name = *used.begin();
      std::string hint = nearestName(name, known);
      throw Error(fmt::format("--param {}: the model has no param '{}'{}", name, name,
                              hint.empty() ? "" : "; did you mean '" + hint + "'?"),
                  {prog_.file, 0, 0});
    }
  }

  Val parseOverride(const std::string &name, const std::string &text) {
    char *end = nullptr;
    double d = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(d))
      throw Error(fmt::format("--param {}={}: the value must be a number", name, text));
    bool isInt = text.find_first_of(".eE") == std::string::npos;
    return isInt ? Val::integer(d) : Val::real(d);
  }

  /// Evaluates an expression that must be a compile-time number.
  Val evalConst(const Expr &e, Instance *inst, const char *what) {
    Val v = eval(e, nullptr, inst);
    if (v.isTensor()) throw Error(fmt::format("{} must be known at compile time, not a tensor", what), e.loc);
    return v;
  }

  /// A layer argument that must be a compile-time true or false.
  bool evalFlag(const Arg &a, Instance *inst, const char *what) {
    Val v = evalConst(*a.value, inst, what);
    if (v.kind != Val::Kind::Bool) throw Error(fmt::format("{} must be true or false", what), a.loc);
    return v.num != 0;
  }

  int64_t evalSize(const Expr &e, Instance *inst, const char *what, bool allowZero = false) {
    Val v = evalConst(e, inst, what);
    if (v.kind == Val::Kind::Bool || v.num != std::floor(v.num) || v.num < (allowZero ? 0 : 1) || v.num > 1e12)
      throw Error(fmt::format("{} must be a {} integer, got {}", what, allowZero ? "non-negative" : "positive",
                              fmt::format("{}", v.num)),
                  e.loc);
    return static_cast<int64_t>(v.num);
  }

  // --- instantiation ---------------------------------------------------------

  const ModuleDecl *findModule(const std::string &name) {
    for (const ModuleDecl &m : prog_.modules)
      if (m.name == name && !m.isModel) return &m;
    return nullptr;
  }

  /// Binds call arguments to a parameter list (positional, then keyword).
  std::vector<const Arg *> bindArgs(const Expr &call, const std::vector<ParamSpec> &specs, const std::string &what,
                                    bool variadic = false) {
    std::vector<const Arg *> bound(specs.size(), nullptr);
    size_t positional = 0;
    auto signature = [&] {
      std::string s;
      for (size_t i = 0; i < specs.size(); ++i) s += (i ? ", " : "") + std::string(specs[i].name);
      return what + "(" + s + (variadic ? ", ..." : "") + ")";
    };
    for (const Arg &a : call.args) {
      if (a.name.empty()) {
        if (positional >= specs.size()) {
          if (variadic) {
            extra_.push_back(&a);
            continue;
          }
          throw Error(fmt::format("too many arguments: {} takes {}", what, signature()), a.loc);
        }
        bound[positional++] = &a;
        continue;
      }
      size_t i = 0;
      while (i < specs.size() && a.name != specs[i].name) ++i;
      if (i == specs.size()) {
        std::vector<std::string> names;
        for (const ParamSpec &s : specs) names.push_back(s.name);
        std::string hint = nearestName(a.name, names);
        throw Error(fmt::format("{} has no argument '{}'{}; it takes {}", what, a.name,
                                hint.empty() ? "" : " (did you mean '" + hint + "'?)", signature()),
                    a.loc);
      }
      if (bound[i]) throw Error(fmt::format("argument '{}' is given twice", a.name), a.loc);
      bound[i] = &a;
    }
    for (size_t i = 0; i < specs.size(); ++i)
      if (specs[i].required && !bound[i])
        throw Error(fmt::format("missing argument '{}': {} takes {}", specs[i].name, what, signature()), call.loc);
    return bound;
  }

  void instantiate(Instance &inst, int depth) {
    if (depth > 32) throw Error("modules nest too deeply (a module that contains itself?)", inst.decl->loc);
    std::set<std::string> seen;
    for (const Member &m : inst.decl->members) {
      if (!seen.insert(m.name).second) throw Error(fmt::format("layer '{}' is declared twice", m.name), m.loc);
      const Expr &call = *m.init;
      Layer layer;
      layer.path = inst.path.empty() ? m.name : inst.path + "." + m.name;
      layer.loc = call.loc;
      if (call.name == "Linear") {
        auto a = bindArgs(call, {{"in_features", true}, {"out_features", true}, {"bias", false}}, "Linear");
        layer.kind = Layer::Kind::Linear;
        layer.in = evalSize(*a[0]->value, &inst, "in_features");
        layer.out = evalSize(*a[1]->value, &inst, "out_features");
        if (a[2]) layer.bias = evalFlag(*a[2], &inst, "bias");
      } else if (call.name == "Embedding") {
        auto a = bindArgs(call, {{"num_embeddings", true}, {"embedding_dim", true}, {"std", false}}, "Embedding");
        layer.kind = Layer::Kind::Embedding;
        layer.in = evalSize(*a[0]->value, &inst, "num_embeddings");
        layer.out = evalSize(*a[1]->value, &inst, "embedding_dim");
        if (a[2]) { // the initial table's N(0, std); PyTorch: nn.init.normal_(weight, std=std)
          Val std = evalConst(*a[2]->value, &inst, "std");
          if (!std.isNumber() || !(std.num >= 0) || !std::isfinite(std.num))
            throw Error("std must be a non-negative number", a[2]->value->loc);
          layer.initStd = std.num;
        }
      } else if (call.name == "LayerNorm") {
        auto a = bindArgs(call, {{"normalized_shape", true}, {"eps", false}, {"elementwise_affine", false}},
                          "LayerNorm");
        layer.kind = Layer::Kind::LayerNorm;
        layer.in = evalSize(*a[0]->value, &inst, "normalized_shape");
        if (a[1]) {
          Val eps = evalConst(*a[1]->value, &inst, "eps");
          if (!eps.isNumber() || !(eps.num > 0) || !std::isfinite(eps.num))
            throw Error(fmt::format("eps must be a positive number, got {}", describe(eps)), a[1]->loc);
          layer.eps = eps.num;
        }
        if (a[2]) layer.bias = evalFlag(*a[2], &inst, "elementwise_affine");
      } else if (call.name == "Conv1d") {
        auto a = bindArgs(call,
                          {{"in_channels", true}, {"out_channels", true}, {"kernel_size", true}, {"padding", false},
                           {"bias", false}},
                          "Conv1d");
        layer.kind = Layer::Kind::Conv1d;
        layer.in = evalSize(*a[0]->value, &inst, "in_channels");
        layer.out = evalSize(*a[1]->value, &inst, "out_channels");
        layer.width = evalSize(*a[2]->value, &inst, "kernel_size");
        if (a[3]) {
          Val pad = evalConst(*a[3]->value, &inst, "padding");
          std::optional<int64_t> n = wholeNumber(pad);
          if (!n || *n < 0 || *n > 4096)
            throw Error(fmt::format("padding must be a whole number from 0 to 4096, got {}", describe(pad)), a[3]->loc);
          layer.padding = *n;
        }
        if (a[4]) layer.bias = evalFlag(*a[4], &inst, "bias");
      } else if (call.name == "TransformerEncoderLayer") {
        auto a = bindArgs(call,
                          {{"d_model", true}, {"nhead", true}, {"dim_feedforward", false}, {"dropout", false},
                           {"activation", false}, {"layer_norm_eps", false}, {"norm_first", false}},
                          "TransformerEncoderLayer");
        layer.kind = Layer::Kind::TransformerEncoderLayer;
        layer.in = evalSize(*a[0]->value, &inst, "d_model");
        layer.out = evalSize(*a[1]->value, &inst, "nhead");
        layer.width = a[2] ? evalSize(*a[2]->value, &inst, "dim_feedforward") : 2048;
        if (layer.in % layer.out != 0)
          throw Error(fmt::format("TransformerEncoderLayer: d_model {} must be a multiple of nhead {}", layer.in,
                                  layer.out),
                      call.loc);
        if (a[3]) {
          Val p = evalConst(*a[3]->value, &inst, "dropout");
          if (!p.isNumber() || !(p.num >= 0 && p.num < 1))
            throw Error(fmt::format("dropout must be a number in [0, 1), got {}", describe(p)), a[3]->loc);
          layer.dropout = p.num;
        }
        if (a[4]) {
          // PyTorch takes "relu", "gelu" or a callable; the DSL names the
          // function: activation=gelu.
          const Expr &act = *a[4]->value;
          if (act.kind != Expr::Kind::Name || (act.name != "relu" && act.name != "gelu"))
            throw Error("activation must be relu or gelu", a[4]->loc);
          layer.gelu = act.name == "gelu";
        }
        if (a[5]) {
          Val eps = evalConst(*a[5]->value, &inst, "layer_norm_eps");
          if (!eps.isNumber() || !(eps.num > 0) || !std::isfinite(eps.num))
            throw Error(fmt::format("layer_norm_eps must be a positive number, got {}", describe(eps)), a[5]->loc);
          layer.eps = eps.num;
        }
        if (a[6]) layer.normFirst = evalFlag(*a[6], &inst, "norm_first");
      } else if (call.name == "GRU" || call.name == "LSTM") {
        auto a = bindArgs(call, {{"input_size", true}, {"hidden_size", true}, {"num_layers", false},
                                 {"bidirectional", false}},
                          call.name);
        layer.kind = call.name == "GRU" ? Layer::Kind::Gru : Layer::Kind::Lstm;
        layer.in = evalSize(*a[0]->value, &inst, "input_size");
        layer.out = evalSize(*a[1]->value, &inst, "hidden_size");
        if (a[2]) layer.layers = evalSize(*a[2]->value, &inst, "num_layers");
        if (a[3]) layer.bidirectional = evalFlag(*a[3], &inst, "bidirectional");
      } else if (call.name == "MultiheadAttention") {
        auto a = bindArgs(call, {{"embed_dim", true}, {"num_heads", true}}, "MultiheadAttention");
        layer.kind = Layer::Kind::MultiheadAttention;
        layer.in = evalSize(*a[0]->value, &inst, "embed_dim");
        layer.out = evalSize(*a[1]->value, &inst, "num_heads");
        if (layer.in % layer.out != 0)
          throw Error(fmt::format("MultiheadAttention: embed_dim {} must be a multiple of num_heads {}", layer.in,
                                  layer.out),
                      call.loc);
      } else if (const ModuleDecl *decl = findModule(call.name)) {
        std::vector<ParamSpec> specs;
        for (const Binding &b : decl->params) specs.push_back({b.name.c_str(), true});
        auto a = bindArgs(call, specs, call.name);
        layer.kind = Layer::Kind::User;
        layer.sub = std::make_unique<Instance>();
        layer.sub->decl = decl;
        layer.sub->path = layer.path;
        for (size_t i = 0; i < specs.size(); ++i)
          layer.sub->args[decl->params[i].name] = evalConst(*a[i]->value, &inst, "a module argument");
        instantiate(*layer.sub, depth + 1);
      } else {
        std::vector<std::string> known(std::begin(kLayerNames), std::end(kLayerNames));
        for (const ModuleDecl &md : prog_.modules)
          if (!md.isModel) known.push_back(md.name);
        std::string hint = nearestName(call.name, known);
        throw Error(fmt::format("unknown layer '{}'{}", call.name,
                                hint.empty() ? fmt::format("; known layers: {} and the modules in this file",
                                                           fmt::join(kLayerNames, ", "))
                                             : "; did you mean '" + hint + "'?"),
                    call.loc);
      }
      inst.layers.emplace_back(m.name, std::move(layer));
    }
  }

  static ir::Builder::Conv1dSpec convSpec(const Layer &l) { return {l.in, l.out, l.width, l.padding, l.bias}; }
  static ir::Builder::RecurrentSpec recurrentSpec(const Layer &l) {
    return {l.in, l.out, l.layers, l.bidirectional, l.kind == Layer::Kind::Lstm};
  }

  void declareParams(Instance &inst) {
    for (auto &[name, layer] : inst.layers) {
      b_->setLoc(layer.loc);
      switch (layer.kind) {
      case Layer::Kind::Linear: b_->linearParams(layer.path, layer.in, layer.out, layer.bias); break;
      case Layer::Kind::Embedding: b_->embeddingParams(layer.path, layer.in, layer.out, layer.initStd); break;
      case Layer::Kind::LayerNorm: b_->layerNormParams(layer.path, layer.in, layer.bias); break;
      case Layer::Kind::MultiheadAttention: b_->multiheadAttentionParams(layer.path, layer.in); break;
      case Layer::Kind::Conv1d: b_->conv1dParams(layer.path, convSpec(layer)); break;
      case Layer::Kind::Gru:
      case Layer::Kind::Lstm: b_->recurrentParams(layer.path, recurrentSpec(layer)); break;
      case Layer::Kind::TransformerEncoderLayer:
        // nn.TransformerEncoderLayer's state_dict order.
        b_->multiheadAttentionParams(layer.path + ".self_attn", layer.in);
        b_->linearParams(layer.path + ".linear1", layer.in, layer.width, true);
        b_->linearParams(layer.path + ".linear2", layer.width, layer.in, true);
        b_->layerNormParams(layer.path + ".norm1", layer.in, true);
        b_->layerNormParams(layer.path + ".norm2", layer.in, true);
        break;
      case Layer::Kind::User: declareParams(*layer.sub); break;
      }
    }
  }

  // --- graphs ------------------------------------------------------------------

  TensorType evalType(const TypeExpr &t, Instance *inst, bool allowSymbols) {
    auto dt = ir::parseDType(t.dtype);
    if (!dt) throw Error(fmt::format("unknown element type '{}' (expected f32, i32 or bool)", t.dtype), t.loc);
    TensorType type{*dt, {}};
    for (const ExprPtr &d : t.dims) {
      if (d->kind == Expr::Kind::Name && !hyper_.count(d->name) && !(inst && inst->args.count(d->name))) {
        if (!allowSymbols) throw Error(fmt::format("unknown dim '{}'", d->name), d->loc);
        type.shape.push_back(Dim::named(d->name));
        continue;
      }
      type.shape.push_back(Dim::constant(evalSize(*d, inst, "a dim", true)));
    }
    return type;
  }

  /// The attributes of an input the data pipeline computes (runtime/data.h
  /// InputRecipe): `pairs: i32[B, T] = ngrams(tokens, n=2, buckets=N)` is
  /// {derived = "ngrams", from = "tokens", n = 2, buckets = N}: at position
  /// t, the hashed id of the n tokens ending at t (0 where fewer than n
  /// tokens end there, and in padding), so it has the tokens' type.
  ir::Attrs derivedInput(const ir::Graph &g, const Binding &p, const std::map<std::string, Val> &vars, Instance *root) {
    const Expr &e = *p.derivedFrom;
    if (e.kind != Expr::Kind::Call || e.name != "ngrams")
      throw Error(fmt::format("input '{}' can only be derived as ngrams(tokens, n=N, buckets=M)", p.name), e.loc);
    auto a = bindArgs(e, {{"tokens", true}, {"n", true}, {"buckets", true}}, "ngrams");
    const Expr &source = *a[0]->value;
    if (source.kind != Expr::Kind::Name || !vars.count(source.name))
      throw Error("the first argument of ngrams must name an earlier input of the fn", source.loc);
    ir::ValueId from = vars.at(source.name).id;
    if (from != g.inputs().front())
      throw Error(fmt::format("ngrams must be taken of the token ids, the fn's first input '{}'",
                              g.value(g.inputs().front()).name),
                  source.loc);
    int64_t n = evalSize(*a[1]->value, root, "n");
    if (n < 2 || n > 8) throw Error(fmt::format("n must be between 2 and 8 (n-grams of n tokens), got {}", n), a[1]->value->loc);
    int64_t buckets = evalSize(*a[2]->value, root, "buckets");
    if (buckets < 2 || buckets > (int64_t(1) << 31) - 1)
      throw Error(fmt::format("buckets must be between 2 and 2^31-1 (ids 1..buckets-1 and 0 for padding), got {}",
                              buckets),
                  a[2]->value->loc);
    const ir::TensorType &want = g.type(from), &got = g.type(g.inputs().back());
    if (!(want == got))
      throw Error(fmt::format("input '{}' is {}; n-grams of '{}' are {}, the type of the token ids", p.name,
                              got.str(), source.name, want.str()),
                  p.loc);
    return {{"derived", std::string("ngrams")}, {"from", source.name}, {"n", n}, {"buckets", buckets}};
  }

  void lowerGraph(ir::Module &module, Instance &root, const Function &f) {
    ir::Graph &g = module.addGraph(f.name);
    Builder b(g);
    b_ = &b;
    usedNames_.clear();
    b.setLoc(f.loc);
    declareParams(root);
    b.setLoc(f.loc);
    for (ValueId p : g.params()) usedNames_.insert(g.value(p).name);
    Scope scope;
    for (const Binding &p : f.params) {
      if (!p.type)
        throw Error(fmt::format("input '{}' of model fn '{}' needs a type, e.g. {}: i32[B, T]", p.name, f.name, p.name),
                    p.loc);
      if (scope.vars.count(p.name)) throw Error(fmt::format("input '{}' is declared twice", p.name), p.loc);
      b.setLoc(p.loc);
      ValueId v = b.input(p.name, evalType(*p.type, &root, true));
      if (p.derivedFrom) g.value(v).attrs = derivedInput(g, p, scope.vars, &root);
      usedNames_.insert(p.name);
      scope.vars[p.name] = Val::tensor(v);
    }
    std::vector<Val> results = runBody(f, scope, &root);
    std::vector<std::string> outNames;
    for (size_t i = 0; i < results.size(); ++i) {
      std::string name = i < f.outputs.size() ? f.outputs[i].name
                                              : (results.size() == 1 ? "output" : fmt::format("output{}", i));
      if (!results[i].isTensor())
        throw Error(fmt::format("fn '{}' returns {} as '{}'; a graph output must be a tensor", f.name,
                                kindName(results[i]), name),
                    returnLoc_);
      if (i < f.outputs.size() && f.outputs[i].type) {
        TensorType want = evalType(*f.outputs[i].type, &root, true);
        const TensorType &got = g.type(results[i].id);
        if (!(want == got))
          throw Error(fmt::format("fn '{}' returns {} as '{}' but declares {}", f.name, got.str(), name, want.str()),
                      returnLoc_);
      }
      b.setLoc(returnLoc_);
      b.output(name, results[i].id);
    }
    b_ = nullptr;
  }

  struct Scope {
    std::map<std::string, Val> vars;
  };

  /// Evaluates a function body; returns the values of its `return`.
  std::vector<Val> runBody(const Function &f, Scope &scope, Instance *inst) {
    for (size_t i = 0; i < f.body.size(); ++i) {
      const Stmt &s = f.body[i];
      if (s.kind == Stmt::Kind::Return) {
        if (!s.annotations.empty())
          throw Error(fmt::format("@{} marks a value bound by 'let' or '=', not a 'return'", s.annotations[0].name),
                      s.annotations[0].loc);
        if (i + 1 != f.body.size()) throw Error("statements after 'return' are never reached", f.body[i + 1].loc);
        std::vector<Val> out;
        for (const ExprPtr &e : s.values) out.push_back(eval(*e, &scope, inst));
        if (!f.outputs.empty() && f.outputs.size() != out.size())
          throw Error(fmt::format("fn '{}' declares {} output{} but returns {}", f.name, f.outputs.size(),
                                  f.outputs.size() == 1 ? "" : "s", out.size()),
                      s.loc);
        returnLoc_ = s.loc;
        return out;
      }
      bool exists = scope.vars.count(s.name) != 0;
      if (s.kind == Stmt::Kind::Let && exists)
        throw Error(fmt::format("'{}' is already defined; write '{} = ...' to rebind it", s.name, s.name), s.loc);
      if (s.kind == Stmt::Kind::Assign && !exists) {
        std::string hint = nearestName(s.name, visibleNames(&scope, inst));
        throw Error(fmt::format("assignment to undefined '{}'; write 'let {} = ...' to define it{}", s.name, s.name,
                                hint.empty() ? "" : " (or did you mean '" + hint + "'?)"),
                    s.loc);
      }
      Val v = eval(*s.values[0], &scope, inst);
      if (v.isTensor()) nameValue(v.id, inst, s.name);
      for (const Annotation &a : s.annotations) annotate(a, s, v);
      scope.vars[s.name] = v;
    }
    throw Error(fmt::format("fn '{}' has no 'return'", f.name), f.loc);
  }

  /// Applies an annotation to the value a statement binds. `@explain` marks
  /// the weights `kiln predict --explain` shows: one per token of the first
  /// input (the token ids, [B, T]), as [B, T], [B, T, 1], or queries x keys
  /// [B, ..., T, T] (the tool averages those over the queries and the dims
  /// between, such as heads).
  void annotate(const Annotation &a, const Stmt &s, const Val &v) {
    if (a.name != "explain")
      throw Error(fmt::format("unknown annotation '@{}'; kiln knows @explain (the weights kiln predict --explain "
                              "shows)",
                              a.name),
                  a.loc);
    if (!b_ || !v.isTensor())
      throw Error(fmt::format("@explain marks a tensor of a model's graph; '{}' is {}", s.name, kindName(v)), a.loc);
    ir::Graph &g = b_->graph();
    const TensorType &t = g.type(v.id);
    const TensorType *tokens = g.inputs().empty() ? nullptr : &g.type(g.inputs().front());
    if (!tokens || tokens->rank() != 2)
      throw Error("@explain needs the model's first input to be the token ids, [B, T]", a.loc);
    const ir::Dim &batch = tokens->shape[0], &length = tokens->shape[1];
    const ir::Shape &d = t.shape;
    size_t r = d.size();
    bool perToken = (r == 2 || (r == 3 && d[2] == ir::Dim::constant(1))) && d[1] == length;
    bool queriesByKeys = r >= 3 && d[r - 1] == length && d[r - 2] == length;
    if (t.dtype != ir::DType::F32 || r < 2 || !(d[0] == batch) || !(perToken || queriesByKeys)) {
      std::string b = batch.str(), l = length.str();
      throw Error(fmt::format("@explain marks '{}' of type {}; it must hold one weight per token of '{}': f32[{}, {}], "
                              "f32[{}, {}, 1], or f32[{}, ..., {}, {}] (queries x keys)",
                              s.name, t.str(), g.value(g.inputs().front()).name, b, l, b, l, b, l, l),
                  a.loc);
    }
    g.markExplained(v.id);
  }

  /// Gives an unnamed node result the name of the `let` that bound it.
  void nameValue(ValueId v, Instance *inst, const std::string &local) {
    ir::ValueInfo &info = b_->graph().value(v);
    if (info.kind != ir::ValueKind::Node || !info.name.empty()) return;
    std::string base = (inst && !inst->path.empty()) ? inst->path + "." + local : local;
    std::string name = base;
    for (int i = 1; usedNames_.count(name); ++i) name = fmt::format("{}.{}", base, i);
    usedNames_.insert(name);
    info.name = name;
  }

  std::vector<std::string> visibleNames(Scope *scope, Instance *inst) {
    std::vector<std::string> names;
    if (scope)
      for (auto &[n, v] : scope->vars) names.push_back(n);
    if (inst) {
      for (auto &[n, v] : inst->args) names.push_back(n);
      for (auto &[n, l] : inst->layers) names.push_back(n);
      for (const Function &f : inst->decl->functions) names.push_back(f.name);
    }
    for (auto &[n, v] : hyper_) names.push_back(n);
    for (const Function &f : prog_.functions) names.push_back(f.name);
    return names;
  }

  // --- expressions -----------------------------------------------------------

  Val eval(const Expr &e, Scope *scope, Instance *inst) {
    switch (e.kind) {
    case Expr::Kind::Number: return e.isInt ? Val::integer(e.number) : Val::real(e.number);
    case Expr::Kind::Bool: return Val::boolean(e.boolValue);
    case Expr::Kind::Name: return lookup(e, scope, inst);
    case Expr::Kind::Unary: {
      Val x = eval(*e.lhs, scope, inst);
      if (x.isNumber()) return x.kind == Val::Kind::Int ? Val::integer(-x.num) : Val::real(-x.num);
      if (x.kind == Val::Kind::Bool) throw Error("cannot negate a bool", e.loc);
      requireGraph(e);
      b_->setLoc(e.loc);
      return Val::tensor(b_->neg(x.id));
    }
    case Expr::Kind::Binary: return binary(e, eval(*e.lhs, scope, inst), eval(*e.rhs, scope, inst));
    case Expr::Kind::Call: return call(e, scope, inst);
    }
    throw Error("unhandled expression", e.loc);
  }

  void requireGraph(const Expr &e) {
    if (!b_) throw Error("tensor operations are not allowed here; this value must be a compile-time number", e.loc);
  }

  Val lookup(const Expr &e, Scope *scope, Instance *inst) {
    if (scope) {
      auto it = scope->vars.find(e.name);
      if (it != scope->vars.end()) return it->second;
    }
    if (inst) {
      auto it = inst->args.find(e.name);
      if (it != inst->args.end()) return it->second;
      if (inst->findLayer(e.name))
        throw Error(fmt::format("'{}' is a layer; call it, as in {}(x)", e.name, e.name), e.loc);
    }
    auto it = hyper_.find(e.name);
    if (it != hyper_.end()) return it->second;
    std::string hint = nearestName(e.name, visibleNames(scope, inst));
    throw Error(fmt::format("unknown name '{}'{}", e.name, hint.empty() ? "" : "; did you mean '" + hint + "'?"),
                e.loc);
  }

  /// Turns a compile-time number into a scalar constant of `dtype`.
  ValueId constantLike(const Val &v, DType dtype, const SourceLoc &loc) {
    if (dtype == DType::Bool && v.kind != Val::Kind::Bool)
      throw Error(fmt::format("cannot combine a bool tensor with {}", kindName(v)), loc);
    if (dtype != DType::Bool && v.kind == Val::Kind::Bool)
      throw Error(fmt::format("cannot combine a {} tensor with a bool", ir::dtypeName(dtype)), loc);
    if (dtype == DType::I32 && v.num != std::floor(v.num))
      throw Error(fmt::format("cannot combine an i32 tensor with the non-integer {}", v.num), loc);
    b_->setLoc(loc);
    return b_->constant(v.num, dtype);
  }

  /// Both operands as tensors (numbers become constants of the other's dtype).
  std::pair<ValueId, ValueId> tensors(const Val &a, const Val &b, const SourceLoc &loc) {
    ValueId x = a.isTensor() ? a.id : constantLike(a, b_->graph().type(b.id).dtype, loc);
    ValueId y = b.isTensor() ? b.id : constantLike(b, b_->graph().type(a.id).dtype, loc);
    return {x, y};
  }

  Val binary(const Expr &e, const Val &a, const Val &b) {
    const std::string &op = e.name;
    if (!a.isTensor() && !b.isTensor()) return foldBinary(e, a, b);
    requireGraph(e);
    auto [x, y] = tensors(a, b, e.loc);
    b_->setLoc(e.loc);
    static const std::map<std::string, OpKind> ops = {
        {"+", OpKind::Add},      {"-", OpKind::Sub},         {"*", OpKind::Mul},  {"/", OpKind::Div},
        {"@", OpKind::MatMul},   {"==", OpKind::Equal},      {"!=", OpKind::NotEqual},
        {"<", OpKind::Less},     {"<=", OpKind::LessEqual},  {">", OpKind::Greater},
        {">=", OpKind::GreaterEqual}};
    return Val::tensor(b_->create(ops.at(op), {x, y}));
  }

  Val foldBinary(const Expr &e, const Val &a, const Val &b) {
    const std::string &op = e.name;
    if (op == "@") throw Error("'@' needs tensors", e.loc);
    if (a.kind == Val::Kind::Bool || b.kind == Val::Kind::Bool) {
      if (op == "==") return Val::boolean(a.num == b.num);
      if (op == "!=") return Val::boolean(a.num != b.num);
      throw Error(fmt::format("cannot apply '{}' to a bool", op), e.loc);
    }
    bool ints = a.kind == Val::Kind::Int && b.kind == Val::Kind::Int;
    auto num = [&](double v) { return ints ? Val::integer(v) : Val::real(v); };
    if (op == "+") return num(a.num + b.num);
    if (op == "-") return num(a.num - b.num);
    if (op == "*") return num(a.num * b.num);
    if (op == "/") {
      if (b.num == 0) throw Error("division by zero", e.loc);
      return Val::real(a.num / b.num);
    }
    if (op == "==") return Val::boolean(a.num == b.num);
    if (op == "!=") return Val::boolean(a.num != b.num);
    if (op == "<") return Val::boolean(a.num < b.num);
    if (op == "<=") return Val::boolean(a.num <= b.num);
    if (op == ">") return Val::boolean(a.num > b.num);
    return Val::boolean(a.num >= b.num);
  }

  ValueId tensorArg(const Arg *a, Scope *scope, Instance *inst, const char *what) {
    Val v = eval(*a->value, scope, inst);
    if (!v.isTensor()) throw Error(fmt::format("{} must be a tensor, got {}", what, kindName(v)), a->loc);
    return v.id;
  }

  int64_t intArg(const Arg *a, Scope *scope, Instance *inst, const char *what) {
    Val v = eval(*a->value, scope, inst);
    std::optional<int64_t> n = wholeNumber(v);
    if (!n) throw Error(fmt::format("{} must be an integer, got {}", what, describe(v)), a->loc);
    return *n;
  }

  bool boolArg(const Arg *a, Scope *scope, Instance *inst, const char *what) {
    Val v = eval(*a->value, scope, inst);
    if (v.kind != Val::Kind::Bool) throw Error(fmt::format("{} must be true or false", what), a->loc);
    return v.num != 0;
  }

  /// Calls a user function (module method or free function), inlining it.
  std::vector<Val> inlineCall(const Function &f, const Expr &call, Scope *scope, Instance *callerInst,
                              Instance *calleeInst) {
    if (callStack_.size() > 64) throw Error("calls nest too deeply (recursion is not supported)", call.loc);
    for (const Function *active : callStack_)
      if (active == &f) throw Error(fmt::format("recursive call of '{}' is not supported", f.name), call.loc);
    std::vector<ParamSpec> specs;
    for (const Binding &p : f.params) specs.push_back({p.name.c_str(), true});
    std::string what = calleeInst && !calleeInst->path.empty() ? calleeInst->path : f.name;
    auto args = bindArgs(call, specs, what);
    Scope inner;
    for (size_t i = 0; i < specs.size(); ++i) {
      Val v = eval(*args[i]->value, scope, callerInst);
      if (f.params[i].type) {
        if (!v.isTensor())
          throw Error(fmt::format("argument '{}' of {} must be a tensor", f.params[i].name, what), args[i]->loc);
        TensorType want = evalType(*f.params[i].type, calleeInst, true);
        const TensorType &got = b_->graph().type(v.id);
        if (!(want == got))
          throw Error(fmt::format("argument '{}' of {} is {} but {} is declared", f.params[i].name, what, got.str(),
                                  want.str()),
                      args[i]->loc);
      }
      inner.vars[f.params[i].name] = v;
    }
    callStack_.push_back(&f);
    SourceLoc savedReturn = returnLoc_;
    std::vector<Val> out = runBody(f, inner, calleeInst);
    returnLoc_ = savedReturn;
    callStack_.pop_back();
    return out;
  }

  Val single(std::vector<Val> vals, const Expr &call) {
    if (vals.size() != 1)
      throw Error(fmt::format("'{}' returns {} values; use it where one value is expected only if it returns one",
                              call.name, vals.size()),
                  call.loc);
    return vals[0];
  }

  const Function *findFunction(const std::vector<Function> &fns, const std::string &name) {
    for (const Function &f : fns)
      if (f.name == name) return &f;
    return nullptr;
  }

  Val call(const Expr &e, Scope *scope, Instance *inst) {
    if (inst) {
      if (Layer *layer = inst->findLayer(e.name)) return callLayer(*layer, e, scope, inst);
      if (const Function *f = findFunction(inst->decl->functions, e.name)) {
        requireGraph(e);
        return single(inlineCall(*f, e, scope, inst, inst), e);
      }
    }
    if (const Function *f = findFunction(prog_.functions, e.name)) {
      requireGraph(e);
      return single(inlineCall(*f, e, scope, inst, nullptr), e);
    }
    return builtin(e, scope, inst);
  }

  Val callLayer(Layer &layer, const Expr &e, Scope *scope, Instance *inst) {
    requireGraph(e);
    if (layer.kind == Layer::Kind::User) {
      const Function *fwd = findFunction(layer.sub->decl->functions, "forward");
      if (!fwd)
        throw Error(fmt::format("module '{}' has no 'fn forward' to call", layer.sub->decl->name), e.loc);
      return single(inlineCall(*fwd, e, scope, inst, layer.sub.get()), e);
    }
    if (layer.kind == Layer::Kind::MultiheadAttention) {
      auto a = bindArgs(e, {{"query", true}, {"key", true}, {"value", true}, {"mask", false}}, layer.path);
      ValueId q = tensorArg(a[0], scope, inst, "query"), k = tensorArg(a[1], scope, inst, "key");
      ValueId v = tensorArg(a[2], scope, inst, "value");
      ValueId keep = a[3] ? tensorArg(a[3], scope, inst, "mask") : -1;
      b_->setLoc(e.loc);
      return Val::tensor(b_->multiheadAttentionLayer(layer.path, q, k, v, keep, layer.in, layer.out));
    }
    if (layer.kind == Layer::Kind::TransformerEncoderLayer) {
      auto a = bindArgs(e, {{"src", true}, {"mask", false}}, layer.path);
      ValueId x = tensorArg(a[0], scope, inst, "src");
      ValueId keep = a[1] ? tensorArg(a[1], scope, inst, "mask") : -1;
      b_->setLoc(e.loc);
      return Val::tensor(encoderLayer(layer, x, keep));
    }
    if (layer.kind == Layer::Kind::Conv1d || layer.kind == Layer::Kind::Gru || layer.kind == Layer::Kind::Lstm) {
      auto a = bindArgs(e, {{"input", true}, {"mask", false}}, layer.path);
      ValueId x = tensorArg(a[0], scope, inst, "the layer input");
      ValueId keep = a[1] ? tensorArg(a[1], scope, inst, "mask") : -1;
      b_->setLoc(e.loc);
      if (layer.kind != Layer::Kind::Conv1d)
        return Val::tensor(b_->recurrentLayer(layer.path, x, keep, recurrentSpec(layer)));
      return Val::tensor(b_->conv1dLayer(layer.path, x, keep, convSpec(layer)));
    }
    auto a = bindArgs(e, {{"input", true}}, layer.path);
    ValueId x = tensorArg(a[0], scope, inst, "the layer input");
    b_->setLoc(e.loc);
    if (layer.kind == Layer::Kind::Linear)
      return Val::tensor(b_->linearLayer(layer.path, x, layer.in, layer.out, layer.bias));
    if (layer.kind == Layer::Kind::LayerNorm)
      return Val::tensor(b_->layerNormLayer(layer.path, x, layer.in, layer.eps, layer.bias));
    return Val::tensor(b_->embeddingLayer(layer.path, x, layer.in, layer.out));
  }

  /// nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout,
  /// activation, layer_norm_eps, norm_first, batch_first=True)(x,
  /// src_key_padding_mask=~keep): self-attention and the feed-forward block,
  /// each with dropout on its output and a residual, LayerNorm after each
  /// (before each with norm_first). Dropout also follows the activation, as
  /// in PyTorch; the one on the attention weights inside self_attn is not
  /// there (kiln's attention has none).
  ValueId encoderLayer(const Layer &l, ValueId x, ValueId keep) {
    const std::string &p = l.path;
    auto drop = [&](ValueId v) {
      return l.dropout > 0 ? b_->create(OpKind::Dropout, {v}, {{"p", l.dropout}, {"key", dropoutKey_++}}) : v;
    };
    auto attention = [&](ValueId v) {
      return drop(b_->multiheadAttentionLayer(p + ".self_attn", v, v, v, keep, l.in, l.out));
    };
    auto feedForward = [&](ValueId v) {
      ValueId h = b_->linearLayer(p + ".linear1", v, l.in, l.width);
      h = l.gelu ? b_->gelu(h) : b_->relu(h);
      return drop(b_->linearLayer(p + ".linear2", drop(h), l.width, l.in));
    };
    auto norm = [&](const char *name, ValueId v) { return b_->layerNormLayer(p + "." + name, v, l.in, l.eps); };
    if (l.normFirst) {
      x = b_->add(x, attention(norm("norm1", x)));
      return b_->add(x, feedForward(norm("norm2", x)));
    }
    x = norm("norm1", b_->add(x, attention(x)));
    return norm("norm2", b_->add(x, feedForward(x)));
  }

  Val foldUnary(const std::string &name, const Val &v, const SourceLoc &loc) {
    double x = v.num;
    double r = name == "sqrt" ? std::sqrt(x)
               : name == "exp" ? std::exp(x)
               : name == "log" ? std::log(x)
               : name == "tanh" ? std::tanh(x)
               : name == "relu" ? std::max(x, 0.0)
               : name == "erf" ? std::erf(x)
                                : 1.0 / (1.0 + std::exp(-x));
    if (!std::isfinite(r)) throw Error(fmt::format("{}({}) is not a finite number", name, x), loc);
    return Val::real(r);
  }

  Val builtin(const Expr &e, Scope *scope, Instance *inst) {
    static const std::map<std::string, OpKind> unary = {{"tanh", OpKind::Tanh}, {"relu", OpKind::Relu},
                                                        {"sigmoid", OpKind::Sigmoid}, {"exp", OpKind::Exp},
                                                        {"log", OpKind::Log}, {"sqrt", OpKind::Sqrt},
                                                        {"erf", OpKind::Erf}};
    const std::string &n = e.name;
    if (auto it = unary.find(n); it != unary.end()) {
      auto a = bindArgs(e, {{"x", true}}, n);
      Val x = eval(*a[0]->value, scope, inst);
      if (x.isNumber()) return foldUnary(n, x, e.loc);
      if (!x.isTensor()) throw Error(fmt::format("{} needs a tensor or a number, got {}", n, kindName(x)), a[0]->loc);
      requireGraph(e);
      b_->setLoc(e.loc);
      return Val::tensor(b_->create(it->second, {x.id}));
    }
    if (std::find(std::begin(kLayerNames), std::end(kLayerNames), n) != std::end(kLayerNames) || findModule(n))
      throw Error(fmt::format("layers are declared as members of a module ('name = {}(...)') and then called", n),
                  e.loc);
    requireGraph(e);
    if (n == "dropout") {
      // F.dropout(x, p): active in the training step only (the step graph
      // gives it the step number; elsewhere canonicalize removes it). Each
      // call is its own op, keyed by its order in the model.
      auto a = bindArgs(e, {{"x", true}, {"p", false}}, n);
      ValueId x = tensorArg(a[0], scope, inst, "x");
      double p = 0.5;
      if (a[1]) {
        Val pv = eval(*a[1]->value, scope, inst);
        if (!pv.isNumber() || !(pv.num >= 0 && pv.num < 1))
          throw Error(fmt::format("dropout: p must be a number in [0, 1), got {}", describe(pv)), a[1]->loc);
        p = pv.num;
      }
      b_->setLoc(e.loc);
      return Val::tensor(b_->create(OpKind::Dropout, {x}, {{"p", p}, {"key", dropoutKey_++}}));
    }
    if (n == "narrow") {
      // Tensor.narrow(dim, start, length): elements [start, start + length)
      // along dim; length a number, or `T - k` on a dim of extent T.
      auto a = bindArgs(e, {{"x", true}, {"dim", true}, {"start", true}, {"length", true}}, n);
      ValueId x = tensorArg(a[0], scope, inst, "x");
      ir::Attrs attrs{{"axis", intArg(a[1], scope, inst, "dim")}, {"start", intArg(a[2], scope, inst, "start")},
                      {"size", dimArg(*a[3], scope, inst, "narrow's length")}};
      b_->setLoc(e.loc);
      return Val::tensor(b_->create(OpKind::Slice, {x}, attrs));
    }
    if (n == "positions") {
      // Position ids for a learned positional Embedding: 0..T-1 along the
      // last dim (or `dim`), i32, in every row.
      auto a = bindArgs(e, {{"x", true}, {"dim", false}}, n);
      ValueId x = tensorArg(a[0], scope, inst, "x");
      ir::Attrs attrs;
      if (a[1]) attrs["axis"] = intArg(a[1], scope, inst, "dim");
      b_->setLoc(e.loc);
      return Val::tensor(b_->create(OpKind::Positions, {x}, attrs));
    }
    if (n == "gelu") {
      // F.gelu(x), approximate=true is approximate='tanh' (Builder::gelu).
      auto a = bindArgs(e, {{"x", true}, {"approximate", false}}, n);
      ValueId x = tensorArg(a[0], scope, inst, "x");
      bool approximate = a[1] && boolArg(a[1], scope, inst, "approximate");
      b_->setLoc(e.loc);
      return Val::tensor(b_->gelu(x, approximate));
    }
    if (n == "softmax" || n == "log_softmax") {
      auto a = bindArgs(e, {{"x", true}, {"dim", false}, {"mask", false}}, n);
      ValueId x = tensorArg(a[0], scope, inst, "x");
      // An argument left out has the op's default (ir/ops.def).
      OpKind op = n == "softmax" ? OpKind::Softmax : OpKind::LogSoftmax;
      int64_t dim = a[1] ? intArg(a[1], scope, inst, "dim") : ir::attrInt(op, {}, "axis");
      std::optional<ValueId> mask;
      if (a[2]) mask = tensorArg(a[2], scope, inst, "mask");
      b_->setLoc(e.loc);
      return Val::tensor(n == "softmax" ? b_->softmax(x, dim, mask) : b_->logSoftmax(x, dim, mask));
    }
    if (n == "sum" || n == "mean" || n == "max") {
      auto a = bindArgs(e, {{"x", true}, {"dim", true}, {"mask", false}, {"keepdim", false}}, n);
      ValueId x = tensorArg(a[0], scope, inst, "x");
      int64_t dim = intArg(a[1], scope, inst, "dim");
      std::optional<ValueId> mask;
      if (a[2]) mask = tensorArg(a[2], scope, inst, "mask");
      ir::Attrs attrs{{"axis", dim}};
      if (a[3]) attrs["keepdim"] = boolArg(a[3], scope, inst, "keepdim"); // left out: the op's default
      b_->setLoc(e.loc);
      OpKind op = n == "sum" ? OpKind::Sum : n == "mean" ? OpKind::Mean : OpKind::Max;
      std::vector<ValueId> ops{x};
      if (mask) ops.push_back(*mask);
      return Val::tensor(b_->create(op, ops, attrs));
    }
    if (n == "matmul") {
      auto a = bindArgs(e, {{"a", true}, {"b", true}, {"transpose_a", false}, {"transpose_b", false}}, n);
      ValueId x = tensorArg(a[0], scope, inst, "a"), y = tensorArg(a[1], scope, inst, "b");
      bool ta = a[2] ? boolArg(a[2], scope, inst, "transpose_a") : ir::attrBool(OpKind::MatMul, {}, "transpose_a");
      bool tb = a[3] ? boolArg(a[3], scope, inst, "transpose_b") : ir::attrBool(OpKind::MatMul, {}, "transpose_b");
      b_->setLoc(e.loc);
      return Val::tensor(b_->matmul(x, y, ta, tb));
    }
    if (n == "transpose") {
      auto a = bindArgs(e, {{"x", true}, {"dim0", true}, {"dim1", true}}, n);
      ValueId x = tensorArg(a[0], scope, inst, "x");
      int64_t d0 = intArg(a[1], scope, inst, "dim0"), d1 = intArg(a[2], scope, inst, "dim1");
      b_->setLoc(e.loc);
      return Val::tensor(b_->swapDims(x, d0, d1));
    }
    if (n == "permute" || n == "reshape") {
      extra_.clear();
      auto a = bindArgs(e, {{"x", true}}, n, /*variadic=*/true);
      std::vector<const Arg *> dims = extra_;
      ValueId x = tensorArg(a[0], scope, inst, "x");
      if (dims.empty()) throw Error(fmt::format("{} needs the new dims, as in {}(x, 0, 2, 1)", n, n), e.loc);
      b_->setLoc(e.loc);
      if (n == "permute") {
        std::vector<int64_t> perm;
        for (const Arg *d : dims) perm.push_back(intArg(d, scope, inst, "a permute dim"));
        return Val::tensor(b_->transpose(x, perm));
      }
      ir::Shape shape;
      for (const Arg *d : dims) shape.push_back(dimArg(*d, scope, inst, "a reshape dim"));
      b_->setLoc(e.loc);
      return Val::tensor(b_->reshape(x, shape));
    }
    if (n == "cat") {
      // torch.cat([a, b, ...], dim) as Builder::concat builds it; the
      // gradient of each piece is its slice.
      std::vector<ValueId> pieces;
      int64_t dim = -1;
      for (const Arg &arg : e.args) {
        if (arg.name.empty()) pieces.push_back(tensorArg(&arg, scope, inst, "a piece"));
        else if (arg.name == "dim") dim = intArg(&arg, scope, inst, "dim");
        else throw Error(fmt::format("cat has no argument '{}'; it takes cat(x, y, ..., dim=-1)", arg.name), arg.loc);
      }
      if (pieces.empty()) throw Error("cat needs the tensors to join, as in cat(a, b, dim=1)", e.loc);
      b_->setLoc(e.loc);
      return Val::tensor(b_->concat(pieces, dim));
    }
    if (n == "unsqueeze") {
      auto a = bindArgs(e, {{"x", true}, {"dim", true}}, n);
      ValueId x = tensorArg(a[0], scope, inst, "x");
      int64_t dim = intArg(a[1], scope, inst, "dim");
      b_->setLoc(e.loc);
      return Val::tensor(b_->unsqueeze(x, dim));
    }
    if (n == "where") {
      auto a = bindArgs(e, {{"cond", true}, {"a", true}, {"b", true}}, n);
      ValueId c = tensorArg(a[0], scope, inst, "cond");
      Val x = eval(*a[1]->value, scope, inst), y = eval(*a[2]->value, scope, inst);
      if (!x.isTensor() && !y.isTensor()) throw Error("where needs at least one tensor branch", e.loc);
      auto [tx, ty] = tensors(x, y, e.loc);
      b_->setLoc(e.loc);
      return Val::tensor(b_->select(c, tx, ty));
    }
    if (n == "cross_entropy") {
      auto a = bindArgs(e, {{"logits", true}, {"labels", true}}, n);
      ValueId l = tensorArg(a[0], scope, inst, "logits"), y = tensorArg(a[1], scope, inst, "labels");
      b_->setLoc(e.loc);
      return Val::tensor(b_->crossEntropy(l, y));
    }
    if (n == "float" || n == "int" || n == "bool") {
      auto a = bindArgs(e, {{"x", true}}, n);
      ValueId x = tensorArg(a[0], scope, inst, "x");
      b_->setLoc(e.loc);
      return Val::tensor(b_->cast(x, n == "float" ? DType::F32 : n == "int" ? DType::I32 : DType::Bool));
    }
    std::vector<std::string> known = visibleNames(scope, inst);
    for (const char *b : {"tanh", "relu", "sigmoid", "exp", "log", "sqrt", "erf", "gelu", "dropout", "narrow", "positions", "softmax", "log_softmax", "sum", "mean",
                          "max", "matmul", "transpose", "permute", "reshape", "unsqueeze", "cat", "where", "cross_entropy",
                          "float", "int", "bool"})
      known.push_back(b);
    std::string hint = nearestName(n, known);
    throw Error(fmt::format("unknown function '{}'{}", n, hint.empty() ? "" : "; did you mean '" + hint + "'?"), e.loc);
  }

  /// Whether e names a symbol of the inputs (`B`, `T`) rather than a
  /// variable, a module argument or a hyper-parameter.
  bool namesSymbol(const Expr &e, Scope *scope, Instance *inst) const {
    return e.kind == Expr::Kind::Name && !(scope && scope->vars.count(e.name)) && !(inst && inst->args.count(e.name)) &&
           !hyper_.count(e.name);
  }

  /// A dim (`what` names it in errors): a non-negative whole number, a symbol
  /// such as T that the graph's inputs define, or such a symbol plus or minus
  /// a whole number (`T - 2`, the windows of a convolution of width 3).
  Dim dimArg(const Arg &a, Scope *scope, Instance *inst, const char *what) {
    const Expr &e = *a.value;
    auto symbolOf = [&](const Expr &name) {
      std::vector<std::string> syms = b_->graph().inputSymbols();
      if (std::find(syms.begin(), syms.end(), name.name) == syms.end())
        throw Error(fmt::format("{} '{}' is neither a number nor a symbol of the inputs", what, name.name), name.loc);
      return name.name;
    };
    if (namesSymbol(e, scope, inst)) return Dim::named(symbolOf(e));
    if (e.kind == Expr::Kind::Binary && (e.name == "+" || e.name == "-") && namesSymbol(*e.lhs, scope, inst)) {
      std::string symbol = symbolOf(*e.lhs);
      Val v = eval(*e.rhs, scope, inst);
      std::optional<int64_t> n = wholeNumber(v);
      if (!n)
        throw Error(fmt::format("{}: a symbol moves by a whole number, but {} {} {} does not", what, symbol, e.name,
                                describe(v)),
                    e.rhs->loc);
      return Dim::named(symbol, e.name == "+" ? *n : -*n);
    }
    Val v = eval(e, scope, inst);
    std::optional<int64_t> n = wholeNumber(v);
    if (!n || *n < 0)
      throw Error(fmt::format("{} must be a non-negative integer or a symbol, got {}", what, describe(v)), a.loc);
    return Dim::constant(*n);
  }

  const Program &prog_;
  const LowerOptions &opts_;
  std::map<std::string, Val> hyper_;
  std::vector<std::pair<std::string, double>> hyperOrder_;
  Builder *b_ = nullptr;
  std::set<std::string> usedNames_;
  int64_t dropoutKey_ = 0; ///< the next dropout's key (its mask's identity)
  std::vector<const Function *> callStack_;
  std::vector<const Arg *> extra_;
  SourceLoc returnLoc_;
};

} // namespace

LoweredModel lower(const Program &program, const LowerOptions &options) {
  Lowering l(program, options);
  return l.run();
}

std::string readFile(const std::string &path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) throw Error(fmt::format("cannot read '{}': not a regular file", path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(fmt::format("cannot read '{}'", path));
  return ss.str();
}

LoweredModel compileSource(const std::string &text, const std::string &file, const LowerOptions &options) {
  registerSource(file, text);
  Program p = parseProgram(text, file);
  return lower(p, options);
}

LoweredModel compileFile(const std::string &path, const LowerOptions &options) {
  return compileSource(readFile(path), path, options);
}

} // namespace kiln::frontend
