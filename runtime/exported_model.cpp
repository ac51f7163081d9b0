//===- runtime/exported_model.cpp - the run time of an exported model ------===//
//
// A model holds the checkpoint it was loaded from (parameters, optimizer
// state and metadata, saved back as kiln saves it) and per exported plan
// (inference, training step) the array of value addresses its entry runs
// on: intermediates in the plan's arena at the offsets kiln's memory plan
// gave them, inputs in buffers of the bound size, parameters in the
// checkpoint's tensors. A smaller batch fills its spare rows with copies of
// its first row (a real text, so no row is all padding) and, in training,
// labels them -1, which cross_entropy does not count: the step's loss and
// gradients are those of the given rows. Shorter rows are padded with 0,
// which the models' masks leave out. A training step writes the new
// parameters into a second set of buffers and swaps them in when the loss
// is finite, so a diverged step leaves the model as it was.
// Every failure is a return code and a message in kiln_x_last_error, never
// an exception across the C API.
//
//===----------------------------------------------------------------------===//
#include "runtime/exported_model.h"

#include "backends/kernels/parallel.h"
#include "ir/diagnostic.h"
#include "runtime/checkpoint.h"
#include "runtime/data.h"
#include "runtime/json.h"
#include "runtime/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <omp.h>
#include <optional>
#include <string>
#include <vector>

namespace {

using kiln::Error;
using kiln::runtime::Tensor;
namespace json = kiln::json;

thread_local std::string lastError;

struct FreeDeleter {
  void operator()(void *p) const { std::free(p); }
};

/// One exported plan and the buffers it runs on.
struct Plan {
  kiln_x_entry entry = nullptr;
  int64_t batch = 0, length = 0; ///< the bound B and T
  int threads = 1;
  int64_t tokens = -1, labels = -1, lr = -1, step = -1; ///< input values
  int64_t idBound = 0;             ///< ids must be in [0, idBound)
  /// Per derived input (Model::recipe order): its value; its ids are in
  /// [0, buckets) and live in derivedBuffers.
  std::vector<int64_t> derived;
  std::vector<std::vector<int32_t>> derivedBuffers;
  std::vector<int64_t> roots;
  std::vector<std::pair<std::string, int64_t>> params;
  struct Output {
    std::string name;
    int64_t value;
    bool bindable;
  };
  std::vector<Output> outputs;
  std::unique_ptr<void, FreeDeleter> arena;
  std::vector<void *> ptr;
  std::vector<int32_t> tokenBuffer, labelBuffer;
  float lrValue = 0, stepValue = 0;

  const Output *output(const std::string &name) const {
    for (const Output &o : outputs)
      if (o.name == name) return &o;
    return nullptr;
  }
};

struct Model {
  kiln::runtime::Checkpoint ckpt;
  kiln::runtime::Vocabulary vocab;
  std::vector<std::string> labels;
  size_t maxLen = 0;
  std::string logits; ///< the inference plan's output of logits
  kiln::runtime::InputRecipe recipe; ///< the inputs computed from a text
  double lr = 0;
  std::optional<Plan> infer, train;
  std::map<std::string, Tensor> spare; ///< where a training step writes the new parameters
};

int64_t integer(const json::Value &o, const char *key) {
  const json::Value *v = o.find(key);
  if (!v) throw Error(fmt::format("the exported model's descriptor lacks '{}' (a kiln bug)", key));
  return v->asInt();
}

Plan makePlan(const json::Value &d, kiln_x_entry entry, const kiln::runtime::InputRecipe &recipe) {
  Plan p;
  p.entry = entry;
  p.batch = integer(d, "B");
  p.length = integer(d, "T");
  p.threads = static_cast<int>(integer(d, "threads"));
  p.idBound = integer(d, "id_bound");
  const json::Array &values = d.find("values")->asArray();
  size_t n = values.size();
  p.roots.resize(n);
  p.ptr.assign(n, nullptr);
  int64_t arenaBytes = integer(d, "arena");
  // Rounded up to the page: aligned_alloc wants a multiple of the alignment.
  size_t bytes = static_cast<size_t>((std::max<int64_t>(arenaBytes, 1) + 4095) / 4096 * 4096);
  p.arena.reset(std::aligned_alloc(4096, bytes));
  if (!p.arena) throw std::bad_alloc();
  for (size_t v = 0; v < n; ++v) {
    const json::Array &entry = values[v].asArray(); // [offset, root]
    int64_t offset = entry.at(0).asInt();
    p.roots[v] = entry.at(1).asInt();
    if (offset >= 0) p.ptr[v] = static_cast<std::byte *>(p.arena.get()) + offset;
  }
  p.derived.assign(recipe.derived.size(), -1);
  for (const auto &[name, v] : d.find("inputs")->asObject()) {
    int64_t id = v.asInt();
    if (name == "labels") p.labels = id;
    else if (name == "lr") p.lr = id;
    else if (name == "step") p.step = id;
    else if (name == recipe.tokens) p.tokens = id;
    else
      for (size_t i = 0; i < recipe.derived.size(); ++i)
        if (recipe.derived[i].name == name) p.derived[i] = id;
  }
  if (p.tokens < 0 || std::count(p.derived.begin(), p.derived.end(), -1))
    throw Error("the exported model's descriptor does not name every input (a kiln bug)");
  for (const auto &[name, v] : d.find("params")->asObject()) p.params.push_back({name, v.asInt()});
  for (const json::Value &o : d.find("outputs")->asArray()) {
    const json::Array &a = o.asArray(); // [name, value, bindable]
    p.outputs.push_back({a.at(0).asString(), a.at(1).asInt(), a.at(2).asBool()});
  }
  p.tokenBuffer.assign(static_cast<size_t>(p.batch * p.length), 0);
  p.derivedBuffers.assign(recipe.derived.size(), p.tokenBuffer);
  p.labelBuffer.assign(static_cast<size_t>(p.batch), -1);
  return p;
}

/// Points the plan's inputs at its buffers (here, not in makePlan: the plan
/// has moved since), its parameters at the model's tensors and every view
/// at its buffer.
void bindParams(Model &m, Plan &p) {
  p.ptr[p.tokens] = p.tokenBuffer.data();
  for (size_t i = 0; i < p.derived.size(); ++i) p.ptr[p.derived[i]] = p.derivedBuffers[i].data();
  if (p.labels >= 0) p.ptr[p.labels] = p.labelBuffer.data();
  if (p.lr >= 0) p.ptr[p.lr] = &p.lrValue;
  if (p.step >= 0) p.ptr[p.step] = &p.stepValue;
  for (const auto &[name, v] : p.params) p.ptr[v] = m.ckpt.tensors.at(name).raw();
  for (size_t v = 0; v < p.ptr.size(); ++v)
    if (p.roots[v] != static_cast<int64_t>(v)) p.ptr[v] = p.ptr[p.roots[v]];
}

/// Copies the batch (rows of planes*len ids: the token ids, then each
/// derived input's) into the plan's input buffers, checking every id;
/// spare rows are copies of row 0, short rows padded with 0.
void fillTokens(const Model &m, Plan &p, const int32_t *ids, int64_t batch, int64_t len) {
  if (!ids) throw Error("ids is NULL");
  if (batch < 1 || batch > p.batch)
    throw Error(fmt::format("a batch of {} rows; this library takes 1 to {} (the B it was exported with)", batch, p.batch));
  if (len < 1 || len > p.length)
    throw Error(fmt::format("rows of {} ids; this library takes 1 to {} (the T it was exported with)", len, p.length));
  const int64_t planes = 1 + static_cast<int64_t>(p.derived.size());
  for (int64_t plane = 0; plane < planes; ++plane) {
    int64_t bound = plane == 0 ? p.idBound : m.recipe.derived[static_cast<size_t>(plane - 1)].buckets;
    std::vector<int32_t> &buffer = plane == 0 ? p.tokenBuffer : p.derivedBuffers[static_cast<size_t>(plane - 1)];
    for (int64_t r = 0; r < batch; ++r)
      for (int64_t i = 0; i < len; ++i)
        if (int32_t id = ids[(r * planes + plane) * len + i]; id < 0 || id >= bound)
          throw Error(fmt::format("id {} of row {}, plane {}, position {} is outside [0, {})", id, r, plane, i, bound));
    std::fill(buffer.begin(), buffer.end(), 0);
    for (int64_t r = 0; r < p.batch; ++r)
      std::memcpy(&buffer[static_cast<size_t>(r * p.length)], ids + ((r < batch ? r : 0) * planes + plane) * len,
                  static_cast<size_t>(len) * sizeof(int32_t));
  }
}

/// Runs the plan's entry on the threads it was made for.
void run(Plan &p) {
  int previous = omp_get_max_threads();
  if (previous != p.threads) omp_set_num_threads(p.threads);
  try {
    p.entry(p.ptr.data(), nullptr);
  } catch (...) {
    if (previous != p.threads) omp_set_num_threads(previous);
    throw;
  }
  if (previous != p.threads) omp_set_num_threads(previous);
}

/// The tensor of every parameter of plan p in the checkpoint, of the shape
/// the plan has for it.
void checkParams(const Model &m, const json::Value &d, const std::string &file, const char *what) {
  for (const auto &[name, shape] : d.find("param_shapes")->asObject()) {
    auto it = m.ckpt.tensors.find(name);
    if (it == m.ckpt.tensors.end())
      throw Error(fmt::format("{}: the checkpoint has no tensor '{}', which the {} needs", file, name, what));
    std::vector<int64_t> want;
    for (const json::Value &e : shape.asArray()) want.push_back(e.asInt());
    if (it->second.dtype() != kiln::ir::DType::F32 || it->second.shape() != want)
      throw Error(fmt::format("{}: '{}' is {} in the checkpoint, but the exported model has it as f32 of {} dims",
                              file, name, it->second.typeStr(), want.size()));
  }
}

template <typename F> auto guarded(F &&f, decltype(f()) failed) -> decltype(f()) {
  try {
    lastError.clear();
    return f();
  } catch (const std::bad_alloc &) {
    lastError = "out of memory";
  } catch (const kiln::backends::kernels::IndexError &e) {
    lastError = fmt::format("id {} at position {} is outside [0, {})", e.value, e.position, e.bound);
  } catch (const std::exception &e) {
    lastError = e.what();
  } catch (...) {
    lastError = "an unknown error";
  }
  return failed;
}

} // namespace

extern "C" {

void *kiln_x_load(const char *descriptor, size_t size, kiln_x_entry infer, kiln_x_entry train, const char *checkpoint) {
  return guarded(
      [&]() -> void * {
        if (!checkpoint) throw Error("the checkpoint path is NULL");
        json::Value d = json::parse(std::string_view(descriptor, size));
        auto m = std::make_unique<Model>();
        m->ckpt = kiln::runtime::loadCheckpoint(checkpoint);
        // The library is the checkpoint's model: with model selection, the
        // selected epoch's parameters (training continues from them, with
        // the optimizer state of the run's last step).
        for (auto &[name, t] : m->ckpt.selected) m->ckpt.tensors[name] = std::move(t);
        m->ckpt.selected.clear();
        m->ckpt.selection = {};
        std::vector<std::string> vocab, labels;
        for (const json::Value &t : d.find("vocab")->asArray()) vocab.push_back(t.asString());
        for (const json::Value &t : d.find("labels")->asArray()) labels.push_back(t.asString());
        if (m->ckpt.vocab != vocab)
          throw Error(fmt::format("{}: its vocabulary is not the one this model was exported with", checkpoint));
        if (m->ckpt.labels != labels)
          throw Error(fmt::format("{}: its labels are not the ones this model was exported with", checkpoint));
        m->vocab = kiln::runtime::Vocabulary(vocab);
        m->labels = labels;
        m->maxLen = static_cast<size_t>(integer(d, "max_len"));
        m->lr = d.find("lr")->asDouble();
        m->recipe.tokens = d.find("tokens")->asString();
        for (const json::Value &e : d.find("derived")->asArray()) {
          const json::Array &a = e.asArray(); // [name, n, buckets]
          m->recipe.derived.push_back({a.at(0).asString(), a.at(1).asInt(), a.at(2).asInt()});
        }
        kiln::runtime::checkInputRecipe(m->recipe, m->ckpt.config, checkpoint);
        const json::Value &graphs = *d.find("graphs");
        checkParams(*m, *graphs.find("infer"), checkpoint, "inference");
        m->infer = makePlan(*graphs.find("infer"), infer, m->recipe);
        m->logits = d.find("logits")->asString();
        if (const json::Value *t = graphs.find("train")) {
          checkParams(*m, *t, checkpoint, "training step");
          m->train = makePlan(*t, train, m->recipe);
          for (const Plan::Output &o : m->train->outputs) {
            auto it = m->ckpt.tensors.find(o.name);
            if (o.bindable && it != m->ckpt.tensors.end())
              m->spare.emplace(o.name, Tensor(it->second.dtype(), it->second.shape()));
          }
        }
        return m.release();
      },
      nullptr);
}

const char *kiln_x_last_error(void) { return lastError.c_str(); }

int64_t kiln_x_classes(const void *model) {
  return model ? static_cast<int64_t>(static_cast<const Model *>(model)->labels.size()) : -1;
}

const char *kiln_x_label(const void *model, int64_t k) {
  const auto *m = static_cast<const Model *>(model);
  if (!m || k < 0 || k >= static_cast<int64_t>(m->labels.size())) return nullptr;
  return m->labels[static_cast<size_t>(k)].c_str();
}

int64_t kiln_x_planes(const void *model) {
  return model ? 1 + static_cast<int64_t>(static_cast<const Model *>(model)->recipe.derived.size()) : -1;
}

int64_t kiln_x_tokenize(const void *model, const char *utf8, int32_t *ids, int64_t maxLen) {
  return guarded(
      [&]() -> int64_t {
        const auto *m = static_cast<const Model *>(model);
        if (!m || !utf8 || (!ids && maxLen > 0)) throw Error("a NULL argument");
        if (maxLen < 0) throw Error(fmt::format("max_len is {}", maxLen));
        // Cut as kiln cuts (the checkpoint's max_len) before the n-grams
        // are made, then to the caller's room.
        kiln::runtime::EncodedData one;
        kiln::runtime::appendEncoded(one, utf8, 0, m->vocab, m->maxLen, m->recipe);
        int64_t n = std::min<int64_t>(maxLen, static_cast<int64_t>(one.ids[0].size()));
        for (size_t plane = 0; plane <= m->recipe.derived.size(); ++plane) {
          const std::vector<int32_t> &got = plane == 0 ? one.ids[0] : one.derived[plane - 1][0];
          int32_t *out = ids + static_cast<int64_t>(plane) * maxLen;
          std::copy(got.begin(), got.begin() + n, out);
          std::fill(out + n, out + maxLen, 0);
        }
        return n;
      },
      -1);
}

int kiln_x_predict(void *model, const int32_t *ids, int64_t batch, int64_t len, float *probs) {
  return guarded(
      [&]() -> int {
        auto *m = static_cast<Model *>(model);
        if (!m || !probs) throw Error("a NULL argument");
        Plan &p = *m->infer;
        fillTokens(*m, p, ids, batch, len);
        bindParams(*m, p);
        run(p);
        const float *x = static_cast<const float *>(p.ptr[p.output(m->logits)->value]);
        size_t classes = m->labels.size();
        for (int64_t r = 0; r < batch; ++r) {
          const float *row = x + r * static_cast<int64_t>(classes);
          float mx = *std::max_element(row, row + classes);
          double sum = 0;
          for (size_t c = 0; c < classes; ++c) sum += std::exp(double(row[c]) - mx);
          for (size_t c = 0; c < classes; ++c)
            probs[r * static_cast<int64_t>(classes) + static_cast<int64_t>(c)] =
                static_cast<float>(std::exp(double(row[c]) - mx) / sum);
        }
        return 0;
      },
      -1);
}

int kiln_x_train_step(void *model, const int32_t *ids, const int32_t *labels, int64_t batch, int64_t len, float *loss) {
  return guarded(
      [&]() -> int {
        auto *m = static_cast<Model *>(model);
        if (!m || !labels) throw Error("a NULL argument");
        if (!m->train) throw Error("this library was exported without a training step (kiln export --graph=train)");
        Plan &p = *m->train;
        fillTokens(*m, p, ids, batch, len);
        int64_t classes = static_cast<int64_t>(m->labels.size());
        for (int64_t r = 0; r < p.batch; ++r) {
          int32_t label = r < batch ? labels[r] : -1;
          if (r < batch && (label < 0 || label >= classes))
            throw Error(fmt::format("label {} of row {} is outside [0, {})", label, r, classes));
          p.labelBuffer[static_cast<size_t>(r)] = label;
        }
        p.lrValue = static_cast<float>(m->lr);
        p.stepValue = static_cast<float>(m->ckpt.step + 1);
        bindParams(*m, p);
        for (const Plan::Output &o : p.outputs)
          if (auto it = m->spare.find(o.name); it != m->spare.end()) p.ptr[o.value] = it->second.raw();
        run(p);
        float value = *static_cast<const float *>(p.ptr[p.output("loss")->value]);
        if (!std::isfinite(value))
          throw Error(fmt::format("training diverged at step {}: the loss is {}; the model keeps its parameters",
                                  m->ckpt.step + 1, value));
        for (const Plan::Output &o : p.outputs) {
          auto it = m->ckpt.tensors.find(o.name);
          if (it == m->ckpt.tensors.end()) continue;
          if (auto s = m->spare.find(o.name); s != m->spare.end()) std::swap(it->second, s->second);
          else if (p.ptr[o.value] != it->second.raw()) std::memcpy(it->second.raw(), p.ptr[o.value], it->second.byteSize());
        }
        ++m->ckpt.step;
        if (loss) *loss = value;
        return 0;
      },
      -1);
}

int kiln_x_save(void *model, const char *checkpoint) {
  return guarded(
      [&]() -> int {
        auto *m = static_cast<Model *>(model);
        if (!m || !checkpoint) throw Error("a NULL argument");
        kiln::runtime::saveCheckpoint(checkpoint, m->ckpt);
        return 0;
      },
      -1);
}

void kiln_x_free(void *model) { delete static_cast<Model *>(model); }

} // extern "C"
