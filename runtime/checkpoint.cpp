//===- runtime/checkpoint.cpp - training checkpoints ----------------------===//
//
// The safetensors metadata holds only strings, so lists and maps (vocab,
// labels, hyper_params, config) are stored as JSON text and the position in
// the run as decimal integers. Loading treats the metadata like any other
// untrusted input: the "format" key is checked first, so that a plain weights
// file gets a message saying what it is rather than a complaint about a
// missing vocabulary, then every required key is checked for presence, kind
// and range. Every error names the file (as its SourceLoc) and the key.
//
//===----------------------------------------------------------------------===//
#include "runtime/checkpoint.h"

#include "ir/diagnostic.h"
#include "runtime/json.h"
#include "runtime/safetensors.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>
#include <set>
#include <string_view>

namespace kiln::runtime {

namespace {

constexpr std::string_view kFormat = "kiln-checkpoint-1";
constexpr std::string_view kOptimizerPrefix = "optimizer.";
/// A parameter's last-step value when the file's NAME holds the selected epoch's.
constexpr std::string_view kLastPrefix = "last.";

std::string writeStrings(const std::vector<std::string> &v) {
  json::Array a;
  a.reserve(v.size());
  for (const std::string &s : v) a.emplace_back(s);
  return json::write(json::Value(std::move(a)));
}

std::string writeStringMap(const std::map<std::string, std::string> &m) {
  json::Object o;
  for (const auto &[k, v] : m) o.emplace(k, json::Value(v));
  return json::write(json::Value(std::move(o)));
}

/// "a number", "an object": for messages about a value of the wrong kind.
std::string aKind(json::Kind k) {
  return (k == json::Kind::Array || k == json::Kind::Object ? "an " : "a ") + std::string(json::kindName(k));
}

/// Reads the metadata of one file; every failure is located at the file and
/// names the key, since the user can only fix it knowing which one.
class MetadataReader {
public:
  MetadataReader(const std::string &path, const std::map<std::string, std::string> &md) : path_(path), md_(md) {}

  [[noreturn]] void fail(const std::string &key, const std::string &msg) const {
    throw Error("checkpoint metadata \"" + key + "\" " + msg, SourceLoc{path_});
  }

  void checkFormat() const {
    auto it = md_.find("format");
    // The usual way to get here is handing `kiln eval` the weights written by
    // PyTorch (or `kiln run --outputs`), so say so rather than list the
    // missing keys one by one.
    if (it == md_.end())
      throw Error("not a kiln checkpoint: the safetensors metadata has no \"format\" key (a plain weights file, "
                  "such as one saved by PyTorch, can be given to `kiln run --weights`)",
                  SourceLoc{path_});
    if (it->second != kFormat)
      throw Error("unsupported checkpoint format \"" + it->second + "\" (this kiln reads \"" + std::string(kFormat) +
                      "\")",
                  SourceLoc{path_});
  }

  const std::string &text(const std::string &key) const {
    auto it = md_.find(key);
    if (it == md_.end()) fail(key, "is missing");
    return it->second;
  }

  json::Value parsed(const std::string &key) const {
    const std::string &s = text(key);
    try {
      return json::parse(s);
    } catch (const Error &e) {
      fail(key, "is not valid JSON: " + e.message());
    }
  }

  std::vector<std::string> strings(const std::string &key) const {
    json::Value v = parsed(key);
    if (!v.isArray()) fail(key, "must be a JSON array of strings, not " + aKind(v.kind()));
    std::vector<std::string> out;
    out.reserve(v.size());
    for (const json::Value &e : v.asArray()) {
      if (!e.isString())
        fail(key, "element " + std::to_string(out.size()) + " is " + aKind(e.kind()) + ", not a string");
      out.push_back(e.asString());
    }
    return out;
  }

  std::map<std::string, std::string> stringMap(const std::string &key) const {
    json::Value v = parsed(key);
    if (!v.isObject())
      fail(key, "must be a JSON object of strings, not " + aKind(v.kind()));
    std::map<std::string, std::string> out;
    for (const auto &[k, e] : v.asObject()) {
      if (!e.isString()) fail(key, "member \"" + k + "\" is " + aKind(e.kind()) + ", not a string");
      out.emplace(k, e.asString());
    }
    return out;
  }

  /// A plain decimal: no sign, no spaces, no fraction, fits in int64.
  int64_t count(const std::string &key) const {
    const std::string &s = text(key);
    int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || s[0] == '-' || ec != std::errc() || end != s.data() + s.size())
      fail(key, "must be a non-negative decimal integer, got \"" + s + "\"");
    return v;
  }

private:
  const std::string &path_;
  const std::map<std::string, std::string> &md_;
};

} // namespace

namespace {
/// kiln never writes or reads a checkpoint holding NaN or infinity: such a
/// file is the end of a diverged run, and predicting with it prints NaN
/// probabilities.
void checkFinite(const std::string &path, const Checkpoint &ckpt, const char *doing) {
  for (const auto *tensors : {&ckpt.tensors, &ckpt.selected})
    for (const auto &[name, t] : *tensors)
      if (auto at = firstNonFinite(t))
      throw Error(fmt::format("{}: {} a checkpoint whose tensor '{}' holds {} (element {}); a diverged run?", path, doing,
                              name, t.f32()[*at], *at));
}
} // namespace

void saveCheckpoint(const std::string &path, const Checkpoint &ckpt) {
  checkFinite(path, ckpt, "refusing to save");
  SafeTensors st;
  st.tensors = ckpt.tensors;
  auto &md = st.metadata;
  md["format"] = kFormat;
  md["vocab"] = writeStrings(ckpt.vocab);
  md["labels"] = writeStrings(ckpt.labels);
  md["model_source"] = ckpt.modelSource;
  md["model_file"] = ckpt.modelFile;
  md["hyper_params"] = writeStringMap(ckpt.hyperParams);
  md["config"] = writeStringMap(ckpt.config);
  md["epoch"] = std::to_string(ckpt.epoch);
  md["batch"] = std::to_string(ckpt.batch);
  md["step"] = std::to_string(ckpt.step);
  if (ckpt.selection.bestEpoch > 0) {
    const Checkpoint::Selection &sel = ckpt.selection;
    md["selection"] = writeStringMap({{"best_epoch", std::to_string(sel.bestEpoch)},
                                      {"best_score", fmt::format("{:.17g}", sel.bestScore)},
                                      {"epochs_since_best", std::to_string(sel.epochsSinceBest)},
                                      {"lr_scale", fmt::format("{:.17g}", sel.lrScale)},
                                      {"stopped", sel.stopped ? "1" : "0"}});
  }
  for (const auto &[name, t] : ckpt.selected) {
    auto current = st.tensors.find(name);
    if (current == st.tensors.end()) throw Error(fmt::format("{}: the selected parameter '{}' is not a parameter", path, name));
    st.tensors[std::string(kLastPrefix) + name] = std::move(current->second);
    st.tensors[name] = t;
  }
  writeSafeTensors(path, st);
}

Checkpoint loadCheckpoint(const std::string &path) {
  // The safetensors reader locates its errors at the file already.
  SafeTensors st = readSafeTensors(path);

  MetadataReader md(path, st.metadata);
  md.checkFormat();

  Checkpoint ckpt;
  ckpt.vocab = md.strings("vocab");
  // Token ids 0 and 1 are fixed by the models (the padding mask is
  // `tokens != 0`) and by the tokenizer (unknown words map to 1).
  if (ckpt.vocab.size() < 2 || ckpt.vocab[0] != "<pad>" || ckpt.vocab[1] != "<unk>")
    md.fail("vocab", "must start with \"<pad>\", \"<unk>\"");
  std::set<std::string_view> seen;
  for (const std::string &t : ckpt.vocab)
    if (!seen.insert(t).second) md.fail("vocab", "lists the token \"" + t + "\" twice");

  ckpt.labels = md.strings("labels");
  if (ckpt.labels.empty()) md.fail("labels", "is empty; a classifier needs at least one label");
  seen.clear();
  for (const std::string &l : ckpt.labels)
    if (!seen.insert(l).second) md.fail("labels", "lists the label \"" + l + "\" twice");

  ckpt.modelSource = md.text("model_source");
  ckpt.modelFile = md.text("model_file");
  ckpt.hyperParams = md.stringMap("hyper_params");
  ckpt.config = md.stringMap("config");
  ckpt.epoch = md.count("epoch");
  ckpt.batch = md.count("batch");
  ckpt.step = md.count("step");
  ckpt.tensors = std::move(st.tensors);
  if (st.metadata.count("selection")) {
    std::map<std::string, std::string> sel = md.stringMap("selection");
    auto number = [&](const char *key) {
      auto it = sel.find(key);
      char *end = nullptr;
      double v = it == sel.end() ? NAN : std::strtod(it->second.c_str(), &end);
      if (it == sel.end() || it->second.empty() || *end || !std::isfinite(v) || v < 0)
        md.fail("selection", fmt::format("needs a non-negative number \"{}\"", key));
      return v;
    };
    ckpt.selection.bestEpoch = static_cast<int64_t>(number("best_epoch"));
    ckpt.selection.bestScore = number("best_score");
    ckpt.selection.epochsSinceBest = static_cast<int64_t>(number("epochs_since_best"));
    ckpt.selection.lrScale = number("lr_scale");
    ckpt.selection.stopped = number("stopped") != 0;
  }
  // `last.NAME` is the last step's NAME, which the run resumes from; NAME
  // in the file is the selected epoch's.
  for (auto it = ckpt.tensors.begin(); it != ckpt.tensors.end();) {
    std::string_view name = it->first;
    if (!name.starts_with(kLastPrefix)) {
      ++it;
      continue;
    }
    std::string param(name.substr(kLastPrefix.size()));
    auto model = ckpt.tensors.find(param);
    if (model == ckpt.tensors.end() || param.starts_with(kOptimizerPrefix))
      throw Error(fmt::format("{}: tensor '{}' is the last step's value of '{}', which the checkpoint does not have",
                              path, it->first, param));
    if (model->second.shape() != it->second.shape() || model->second.dtype() != it->second.dtype())
      throw Error(fmt::format("{}: tensor '{}' and '{}' differ in shape or dtype", path, it->first, param));
    ckpt.selected[param] = std::move(model->second);
    model->second = std::move(it->second);
    it = ckpt.tensors.erase(it);
  }
  checkFinite(path, ckpt, "refusing to load");
  return ckpt;
}


const std::string &configString(const Config &config, const std::string &key, const std::string &file) {
  auto it = config.find(key);
  if (it == config.end())
    throw Error(fmt::format("{}: the checkpoint's training config has no '{}'", file, key));
  return it->second;
}

void checkInputRecipe(const InputRecipe &model, const Config &config, const std::string &file) {
  auto it = config.find("inputs");
  std::string trained = it == config.end() ? "" : it->second, wanted = model.str();
  if (trained == wanted) return;
  auto describe = [](const std::string &r) { return r.empty() ? std::string("only token ids") : r; };
  throw Error(fmt::format("{}: the model's inputs are {} but the checkpoint was trained with {}: its n-gram ids "
                          "would not mean what they meant in training",
                          file, describe(wanted), describe(trained)));
}

int64_t configInteger(const Config &config, const std::string &key, const std::string &file) {
  const std::string &text = configString(config, key, file);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 0)
    throw Error(fmt::format("{}: the checkpoint's training config '{}' must be a non-negative integer, got '{}'", file,
                            key, text));
  return v;
}

double configNumber(const Config &config, const std::string &key, const std::string &file) {
  const std::string &text = configString(config, key, file);
  char *end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v) || v < 0)
    throw Error(fmt::format("{}: the checkpoint's training config '{}' must be a non-negative number, got '{}'", file,
                            key, text));
  return v;
}

std::map<std::string, Tensor> modelTensors(const Checkpoint &ckpt) {
  std::map<std::string, Tensor> out;
  for (const auto &[name, t] : ckpt.tensors)
    if (!std::string_view(name).starts_with(kOptimizerPrefix)) out.emplace(name, t);
  for (const auto &[name, t] : ckpt.selected) out[name] = t;
  return out;
}

} // namespace kiln::runtime
