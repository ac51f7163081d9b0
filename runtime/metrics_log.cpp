//===- runtime/metrics_log.cpp - a training run's metrics as JSON Lines ---===//
//
// See metrics_log.h. Reading is strict about complete lines (a record with
// a missing or mistyped field names the file, line and field) and lenient
// only about what a killed writer leaves, so that the page drawn from the
// file can trust every number in it.
//
//===----------------------------------------------------------------------===//
#include "runtime/metrics_log.h"

#include "ir/diagnostic.h"
#include "runtime/data.h"
#include "runtime/json.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>

namespace kiln::runtime {

namespace {

json::Array stringArray(const std::vector<std::string> &items) {
  return json::Array(items.begin(), items.end());
}

} // namespace

std::string metricsLine(const RunRecord &r) {
  json::Object recipe;
  for (const auto &[k, v] : r.recipe) recipe.emplace(k, v);
  return json::write(json::Object{
      {"kind", "run"},
      {"format", kMetricsFormat},
      {"model", r.model},
      {"resumed_from", r.resumedFrom.empty() ? json::Value(nullptr) : json::Value(r.resumedFrom)},
      {"start_step", r.startStep},
      {"start_epoch", r.startEpoch},
      {"start_batch", r.startBatch},
      {"epochs", r.epochs},
      {"batches_per_epoch", r.batchesPerEpoch},
      {"total_steps", r.totalSteps},
      {"train_examples", r.trainExamples},
      {"valid_examples", r.validExamples},
      {"parameters", r.parameters},
      {"labels", stringArray(r.labels)},
      {"recipe", std::move(recipe)},
      {"started", r.started},
  });
}

std::string metricsLine(const StepRecord &r) {
  // The loss is an f32 held in a double: written exactly (the shortest
  // text of the double), it reads back as the same f32, which --loss-log
  // prints with 9 significant digits.
  return json::write(json::Object{{"kind", "step"},     {"step", r.step},         {"epoch", r.epoch},
                                  {"batch", r.batch},   {"loss", r.loss},         {"lr", r.lr},
                                  {"examples", r.examples}, {"tokens", r.tokens}});
}

std::string metricsLine(const EpochRecord &r) {
  json::Object o{{"kind", "epoch"},
                 {"epoch", r.epoch},
                 {"step", r.step},
                 {"steps", r.steps},
                 {"examples", r.examples},
                 {"tokens", r.tokens},
                 {"seconds", r.seconds},
                 {"tokens_per_s", r.seconds > 0 ? static_cast<double>(r.tokens) / r.seconds : 0.0},
                 {"train_loss", r.trainLoss},
                 {"train_accuracy", r.trainAccuracy},
                 {"partial", r.partial},
                 {"best", r.best},
                 {"lr_scale", r.lrScale}};
  if (r.validated) {
    json::Array rows;
    for (const auto &row : r.confusion) rows.emplace_back(json::Array(row.begin(), row.end()));
    o.emplace("valid_loss", r.validLoss);
    o.emplace("accuracy", r.accuracy);
    o.emplace("macro_f1", r.macroF1);
    o.emplace("labels", stringArray(r.labels));
    o.emplace("confusion", std::move(rows));
  }
  return json::write(o);
}

std::string metricsLine(const EndRecord &r) {
  return json::write(json::Object{
      {"kind", "end"}, {"step", r.step}, {"epoch", r.epoch}, {"status", r.status}, {"message", r.message}});
}

// --- writing -------------------------------------------------------------------

MetricsWriter::MetricsWriter(const std::string &path, bool replace) : path_(path) {
  // A writer killed mid-line left a line without its newline: end it, so
  // that this run's first record starts a line of its own.
  bool cutOff = false;
  if (!replace)
    if (std::FILE *f = std::fopen(path.c_str(), "rb")) {
      if (std::fseek(f, -1, SEEK_END) == 0) cutOff = std::fgetc(f) != '\n';
      std::fclose(f);
    }
  file_ = std::fopen(path.c_str(), replace ? "wb" : "ab");
  if (!file_) throw Error(fmt::format("cannot open '{}' for the metrics log: {}", path, std::strerror(errno)));
  if (cutOff) append("");
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
}

void MetricsWriter::append(const std::string &line) {
  std::string text = line + "\n";
  // Flushed line by line: a run killed at any point leaves every complete
  // record readable (the kernel has them; this is not an fsync).
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fflush(file_) != 0)
    throw Error(fmt::format("cannot write the metrics log '{}': {}", path_, std::strerror(errno)));
}

// --- reading -------------------------------------------------------------------

namespace {

/// The fields of one record, with errors naming the file, line and field.
class Fields {
public:
  Fields(const json::Value &v, std::string where) : v_(v), where_(std::move(where)) {
    if (!v.isObject()) fail("a record is a JSON object");
    kind_ = v.find("kind") && v.find("kind")->isString() ? v.find("kind")->asString() : "";
  }
  const std::string &kind() const { return kind_; }

  const json::Value &at(const char *key, json::Kind kind) const {
    const json::Value *f = v_.find(key);
    if (!f) fail(fmt::format("the {} record has no '{}'", kind_, key));
    if (f->kind() != kind)
      fail(fmt::format("'{}' of the {} record is {}, not {}", key, kind_, json::kindName(f->kind()),
                       json::kindName(kind)));
    return *f;
  }
  /// A non-negative integer, at least `least`.
  int64_t count(const char *key, int64_t least = 0) const {
    const json::Value &f = at(key, json::Kind::Number);
    if (!f.isInt() || f.asInt() < least)
      fail(fmt::format("'{}' of the {} record must be an integer of at least {}", key, kind_, least));
    return f.asInt();
  }
  double number(const char *key) const { return at(key, json::Kind::Number).asDouble(); }
  double nonNegative(const char *key) const {
    double d = number(key);
    if (d < 0) fail(fmt::format("'{}' of the {} record must not be negative", key, kind_));
    return d;
  }
  /// A number in [0, 1] (accuracy, F1).
  double fraction(const char *key) const {
    double d = number(key);
    if (d < 0 || d > 1) fail(fmt::format("'{}' of the {} record must be between 0 and 1", key, kind_));
    return d;
  }
  std::string text(const char *key) const { return at(key, json::Kind::String).asString(); }
  /// A string or null (read as "").
  std::string textOrNull(const char *key) const {
    const json::Value *f = v_.find(key);
    return f && f->isNull() ? "" : text(key);
  }
  bool flag(const char *key) const { return at(key, json::Kind::Bool).asBool(); }
  std::vector<std::string> strings(const char *key) const {
    std::vector<std::string> out;
    for (const json::Value &e : at(key, json::Kind::Array).asArray()) {
      if (!e.isString()) fail(fmt::format("'{}' of the {} record must hold strings", key, kind_));
      out.push_back(e.asString());
    }
    return out;
  }
  [[noreturn]] void fail(const std::string &message) const { throw Error(where_ + ": " + message); }

private:
  const json::Value &v_;
  std::string where_, kind_;
};

RunRecord readRun(const Fields &f) {
  RunRecord r;
  r.model = f.text("model");
  r.resumedFrom = f.textOrNull("resumed_from");
  r.startStep = f.count("start_step");
  r.startEpoch = f.count("start_epoch");
  r.startBatch = f.count("start_batch");
  r.epochs = f.count("epochs");
  r.batchesPerEpoch = f.count("batches_per_epoch");
  r.totalSteps = f.count("total_steps");
  r.trainExamples = f.count("train_examples");
  r.validExamples = f.count("valid_examples");
  r.parameters = f.count("parameters");
  r.labels = f.strings("labels");
  for (const auto &[k, v] : f.at("recipe", json::Kind::Object).asObject()) {
    if (!v.isString()) f.fail(fmt::format("recipe value '{}' of the run record must be a string", k));
    r.recipe[k] = v.asString();
  }
  r.started = f.text("started");
  return r;
}

StepRecord readStep(const Fields &f) {
  StepRecord r;
  r.step = f.count("step", 1);
  r.epoch = f.count("epoch", 1);
  r.batch = f.count("batch", 1);
  r.loss = f.nonNegative("loss"); // a cross-entropy
  r.lr = f.nonNegative("lr");
  r.examples = f.count("examples");
  r.tokens = f.count("tokens");
  return r;
}

EpochRecord readEpoch(const Fields &f, const json::Value &v) {
  EpochRecord r;
  r.epoch = f.count("epoch", 1);
  r.step = f.count("step");
  r.steps = f.count("steps");
  r.examples = f.count("examples");
  r.tokens = f.count("tokens");
  r.seconds = f.nonNegative("seconds");
  r.trainLoss = f.nonNegative("train_loss");
  r.trainAccuracy = f.fraction("train_accuracy");
  r.partial = f.flag("partial");
  r.best = f.flag("best");
  r.lrScale = f.nonNegative("lr_scale");
  r.validated = v.find("valid_loss") != nullptr;
  if (!r.validated) return r;
  r.validLoss = f.nonNegative("valid_loss");
  r.accuracy = f.fraction("accuracy");
  r.macroF1 = f.fraction("macro_f1");
  r.labels = f.strings("labels");
  for (const json::Value &row : f.at("confusion", json::Kind::Array).asArray()) {
    if (!row.isArray() || row.size() != r.labels.size())
      f.fail(fmt::format("each row of the confusion matrix must have one count per label ({})", r.labels.size()));
    std::vector<int64_t> counts;
    for (const json::Value &c : row.asArray()) {
      if (!c.isInt() || c.asInt() < 0) f.fail("the confusion matrix must hold non-negative integers");
      counts.push_back(c.asInt());
    }
    r.confusion.push_back(std::move(counts));
  }
  if (r.confusion.size() != r.labels.size())
    f.fail(fmt::format("the confusion matrix must have one row per label ({})", r.labels.size()));
  return r;
}

EndRecord readEnd(const Fields &f) {
  EndRecord r;
  r.step = f.count("step");
  r.epoch = f.count("epoch");
  r.status = f.text("status");
  r.message = f.text("message");
  return r;
}

/// Whether a resumed run continues `earlier`: the same labels and recipe
/// (--epochs may grow on --resume, so it does not count).
bool continues(const RunRecord &earlier, const RunRecord &resumed) {
  auto recipe = [](std::map<std::string, std::string> r) {
    r.erase("epochs");
    return r;
  };
  return earlier.labels == resumed.labels && recipe(earlier.recipe) == recipe(resumed.recipe);
}

struct Line {
  size_t number = 0;
  std::string_view text;
};

/// The line's JSON, or nothing (and why in `error`).
std::optional<json::Value> parseLine(const Line &l, std::string *error = nullptr) {
  try {
    return json::parse(l.text);
  } catch (const Error &e) {
    if (error) *error = e.what();
    return std::nullopt;
  }
}

bool isRunRecord(const std::optional<json::Value> &v) {
  const json::Value *kind = v && v->isObject() ? v->find("kind") : nullptr;
  return kind && kind->isString() && kind->asString() == "run";
}

} // namespace

MetricsLog parseMetricsLog(std::string_view text, const std::string &name) {
  std::vector<Line> lines;
  size_t number = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    Line l;
    l.number = ++number;
    l.text = text.substr(pos, end - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    if (l.text.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    lines.push_back(l); // parsed one at a time below: a long run's log has 100,000s of lines
  }
  const bool lastCutOff = !text.empty() && text.back() != '\n';

  MetricsLog log;
  std::map<int64_t, StepRecord> steps;
  std::map<int64_t, EpochRecord> epochs;
  for (size_t i = 0; i < lines.size(); ++i) {
    const Line &l = lines[i];
    std::string where = fmt::format("{}:{}", name, l.number);
    auto notMetrics = [&](const char *why) {
      return Error(fmt::format("{} is not a kiln metrics log: {} (kiln train --report DIR writes DIR/metrics.jsonl)",
                               name, why));
    };
    std::string error;
    std::optional<json::Value> value = parseLine(l, &error);
    if (!value) {
      bool killed =
          (i + 1 == lines.size() && lastCutOff) || (i + 1 < lines.size() && isRunRecord(parseLine(lines[i + 1])));
      if (!killed && log.runs.empty()) throw notMetrics("its first line is not JSON");
      if (!killed) throw Error(fmt::format("{}: {}", where, error));
      log.skipped.push_back(fmt::format("{}: a record cut off by a run that was killed", where));
      continue;
    }
    if (log.runs.empty() && !isRunRecord(value)) throw notMetrics("its first record is not a run record");
    Fields f(*value, where);
    if (f.kind() == "run") {
      std::string format = f.text("format");
      if (format != kMetricsFormat)
        f.fail(fmt::format("metrics format '{}', expected {} (written by another version of kiln?)", format,
                           kMetricsFormat));
      RunRecord r = readRun(f);
      if (r.resumedFrom.empty() || log.runs.empty() || !continues(log.runs.front(), r)) {
        // A fresh run, or a resumed one of another recipe: the run starts over here.
        log.earlierRuns = log.earlierRuns || !log.runs.empty();
        log.runs.clear();
        steps.clear();
        epochs.clear();
      } else {
        // What the resumed run redoes is its own.
        steps.erase(steps.upper_bound(r.startStep), steps.end());
        epochs.erase(epochs.upper_bound(r.startEpoch), epochs.end());
      }
      log.end.reset();
      log.runs.push_back(std::move(r));
    } else if (f.kind() == "step") {
      StepRecord s = readStep(f);
      steps[s.step] = s;
    } else if (f.kind() == "epoch") {
      EpochRecord e = readEpoch(f, *value);
      epochs[e.epoch] = std::move(e);
    } else if (f.kind() == "end") {
      log.end = readEnd(f);
    } else {
      f.fail(fmt::format("unknown record kind '{}'", f.kind()));
    }
  }
  if (log.runs.empty()) throw Error(fmt::format("{} holds no records", name));
  for (auto &[step, s] : steps) log.steps.push_back(s);
  for (auto &[epoch, e] : epochs) log.epochs.push_back(std::move(e));
  return log;
}

MetricsLog readMetricsLog(const std::string &path) { return parseMetricsLog(readFile(path), path); }

} // namespace kiln::runtime
