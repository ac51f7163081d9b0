//===- tools/bench.cpp - kiln bench: timing steps of a model --------------===//
//
// Times, for each backend asked for, a full training step (forward,
// backward, Adam update, with the updated parameters fed back as training
// does) and inference at batch B and at batch 1, on random token batches of
// length T. Reports the median and minimum over --repeat runs after --warmup
// runs, achieved GFLOP/s (FLOPs counted from the graph: 2·M·N·K per matmul,
// one per result element for every other op), and memory: parameters and
// optimizer state plus the backend's workspace. --profile adds the time per
// node, largest first. --json writes the numbers for bench/report.py.
//
//===----------------------------------------------------------------------===//
#include "tools/commands.h"

#include "backends/backend.h"
#include "frontend/lower.h"
#include "ir/verifier.h"
#include "passes/training.h"
#include "runtime/init.h"

#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <fstream>
#include <random>

namespace kiln::tools {

using cli::Args;
using cli::UsageError;

namespace {

const char *benchHelp = R"(usage: kiln bench MODEL.kiln [options]

Times a training step (forward + backward + optimizer) and inference.

options:
  --backend NAME|all   onednn | reference | all (default all)
  --mode M             train | infer | all (default all)
  --batch B            batch size (default 64); inference is also timed at B=1
  --seq T              tokens per text (default 128)
  --repeat N           timed runs (default 20)
  --warmup N           untimed runs first (default 3)
  --profile            time per node (largest first)
  --json FILE          write the results as JSON
  --optimizer NAME     adam | adamw | sgd (default adam)
  --param NAME=VAL     override a hyper-parameter (repeatable)
  --threads N          worker threads (default: all cores)
)";

/// FLOPs of one run of g: 2·M·N·K (times the batch) per matmul, one per
/// result element for every other op.
int64_t graphFlops(const ir::Graph &g, const ir::SymbolBindings &b) {
  int64_t flops = 0;
  for (const ir::Node &n : g.nodes()) {
    auto out = *ir::concreteShape(g.type(n.result).shape, b);
    if (n.op == ir::OpKind::MatMul) {
      auto a = *ir::concreteShape(g.type(n.operands[0]).shape, b);
      int64_t k = ir::attrBool(n.attrs, "transpose_a", false) ? a[a.size() - 2] : a.back();
      flops += 2 * ir::numElements(out) * k;
    } else {
      flops += ir::numElements(out);
    }
  }
  return flops;
}

struct Timing {
  std::string what;
  double medianMs = 0, minMs = 0;
  int64_t flops = 0, memoryBytes = 0;
  std::vector<runtime::NodeTiming> profile;
};

template <typename F> Timing timeRuns(const std::string &what, int warmup, int repeat, F &&once) {
  for (int i = 0; i < warmup; ++i) once();
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    once();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  Timing t;
  t.what = what;
  t.medianMs = ms[ms.size() / 2];
  t.minMs = ms.front();
  return t;
}

runtime::Tensor randomTokens(int64_t batch, int64_t seq, int64_t vocab, std::mt19937 &rng) {
  std::uniform_int_distribution<int> id(2, static_cast<int>(std::max<int64_t>(vocab - 1, 2)));
  runtime::Tensor t(ir::DType::I32, {batch, seq});
  for (int32_t &v : t.i32()) v = id(rng);
  return t;
}

int64_t tensorBytes(const runtime::TensorMap &m) {
  int64_t b = 0;
  for (const auto &[name, t] : m) b += static_cast<int64_t>(t.byteSize());
  return b;
}

void printProfile(const std::vector<runtime::NodeTiming> &profile, const ir::Graph &g) {
  if (profile.empty()) {
    fmt::print("    (no profile from this backend)\n");
    return;
  }
  std::vector<runtime::NodeTiming> p = profile;
  double total = 0;
  for (const auto &t : p) total += t.seconds;
  std::sort(p.begin(), p.end(), [](const auto &a, const auto &b) { return a.seconds > b.seconds; });
  for (size_t i = 0; i < std::min<size_t>(p.size(), 15); ++i) {
    const ir::Node &n = g.nodes()[p[i].node];
    std::string loc = n.locs.empty() ? "" : fmt::format("{}:{}", n.locs[0].line, n.locs[0].col);
    fmt::print("    {:6.3f} ms {:5.1f}%  {:<34} {:<16} {}\n", p[i].seconds * 1e3 / std::max<int64_t>(p[i].calls, 1),
               100 * p[i].seconds / std::max(total, 1e-12), p[i].label, g.type(n.result).str(), loc);
  }
}

} // namespace

int cmdBench(int argc, char **argv) {
  std::vector<std::string> valued = {"--backend", "--mode",   "--batch", "--seq",   "--repeat",
                                     "--warmup",  "--json",   "--param", "--threads"};
  valued.insert(valued.end(), optimizerValuedOptions.begin(), optimizerValuedOptions.end());
  Args args(argc, argv, 2, valued, {"--profile", "--nesterov"});
  if (args.help) {
    std::fputs(benchHelp, stdout);
    return 0;
  }
  if (args.positional.size() != 1) throw UsageError("bench needs one MODEL.kiln");
  std::string modelFile = args.positional.front();
  std::string mode = args.get("--mode").value_or("all");
  if (mode != "train" && mode != "infer" && mode != "all") throw UsageError("--mode takes train, infer or all");
  std::vector<std::string> backendsToRun;
  std::string which = args.get("--backend").value_or("all");
  for (const std::string &name : backends::backendNames())
    if (name != "auto" && (which == "all" || which == name)) backendsToRun.push_back(name);
  if (backendsToRun.empty()) backends::compile(ir::Graph(), which, {}); // throws the unknown-backend error
  int64_t batch = args.integer("--batch", 64), seq = args.integer("--seq", 128);
  int repeat = static_cast<int>(std::max<int64_t>(1, args.integer("--repeat", 20)));
  int warmup = static_cast<int>(args.integer("--warmup", 3));
  if (batch < 1 || seq < 1) throw UsageError("--batch and --seq must be at least 1");

  frontend::LowerOptions lowerOpts;
  lowerOpts.overrides = cli::paramOverrides(args);
  frontend::LoweredModel model = frontend::compileFile(modelFile, lowerOpts);
  const ir::Graph *forward = model.module.find("forward");
  if (!forward) throw Error(fmt::format("{}: the model has no fn forward", modelFile));
  passes::OptimizerConfig optimizer = optimizerConfig(args);
  optimizer.outputGradients = false; // as kiln train runs it
  ir::Graph train = passes::buildTrainGraph(*forward, optimizer);
  ir::verify(train);
  int64_t vocab = 2, classes = 2;
  for (auto &[name, v] : model.hyperParams) {
    if (name == "vocab") vocab = static_cast<int64_t>(v);
    if (name == "classes") classes = static_cast<int64_t>(v);
  }
  runtime::CompileOptions copts;
  copts.threads = static_cast<int>(args.integer("--threads", 0));

  std::mt19937 rng(1);
  runtime::Tensor tokens = randomTokens(batch, seq, vocab, rng), single = randomTokens(1, seq, vocab, rng);
  runtime::Tensor labels(ir::DType::I32, {batch});
  for (int32_t &l : labels.i32()) l = static_cast<int32_t>(rng() % static_cast<uint32_t>(classes));
  runtime::TensorMap init = runtime::materializeParams(train, {}, 0);
  runtime::TensorMap modelParams;
  for (ir::ValueId p : forward->params()) modelParams[forward->value(p).name] = init.at(forward->value(p).name);

  fmt::print("{}: B={} T={} vocab={} | {} parameters ({:.1f} MiB with optimizer state) | {} repeats after {} warm-up\n",
             modelFile, batch, seq, vocab, modelParams.size(), tensorBytes(init) / 1048576.0, repeat, warmup);
  std::string json = "{\n  \"model\": \"" + modelFile + "\",\n  \"results\": [";
  bool firstJson = true;
  for (const std::string &backend : backendsToRun) {
    std::vector<Timing> timings;
    if (mode != "infer") {
      auto exe = backends::compile(train, backend, copts);
      exe->setProfiling(args.flag("--profile"));
      runtime::TensorMap store = init;
      float lossValue = 0;
      int step = 0;
      Timing t = timeRuns("train", warmup, repeat, [&] {
        runtime::TensorMap out = exe->run({{"tokens", tokens},
                                           {"labels", labels},
                                           {"lr", runtime::Tensor::fromF32({}, {1e-3f})},
                                           {"step", runtime::Tensor::fromF32({}, {static_cast<float>(++step)})}},
                                          store);
        lossValue = out.at("loss").f32()[0];
        for (auto &[name, v] : out)
          if (auto it = store.find(name); it != store.end()) it->second = std::move(v);
      });
      (void)lossValue;
      t.flops = graphFlops(train, {{"B", batch}, {"T", seq}});
      t.memoryBytes = exe->workspaceBytes() + tensorBytes(store);
      t.profile = exe->profile();
      timings.push_back(std::move(t));
    }
    if (mode != "train") {
      auto exe = backends::compile(*forward, backend, copts);
      for (const auto &[what, input, b] : {std::tuple{"infer", &tokens, batch}, std::tuple{"infer_b1", &single, int64_t{1}}}) {
        exe->setProfiling(args.flag("--profile") && b == batch);
        Timing t = timeRuns(what, warmup, repeat * (b == 1 ? 5 : 1), [&] { exe->run({{"tokens", *input}}, modelParams); });
        t.flops = graphFlops(*forward, {{"B", b}, {"T", seq}});
        t.memoryBytes = exe->workspaceBytes() + tensorBytes(modelParams);
        if (b == batch) t.profile = exe->profile();
        timings.push_back(std::move(t));
      }
    }
    for (const Timing &t : timings) {
      std::string label = t.what == "train" ? fmt::format("train step B={}", batch)
                          : t.what == "infer" ? fmt::format("inference B={}", batch)
                                              : "inference B=1";
      fmt::print("  {:<10} {:<18} median {:9.3f} ms  min {:9.3f} ms  {:7.1f} GFLOP/s ({:.3f} GFLOP)  memory {:.1f} MiB\n",
                 backend, label, t.medianMs, t.minMs, t.flops / (t.medianMs * 1e6), t.flops / 1e9,
                 t.memoryBytes / 1048576.0);
      if (args.flag("--profile") && t.what != "infer_b1") printProfile(t.profile, t.what == "train" ? train : *forward);
      json += fmt::format("{}\n    {{\"backend\": \"{}\", \"what\": \"{}\", \"batch\": {}, \"seq\": {}, \"median_ms\": {:.6f}, "
                          "\"min_ms\": {:.6f}, \"flops\": {}, \"memory_bytes\": {}}}",
                          firstJson ? "" : ",", backend, t.what, t.what == "infer_b1" ? 1 : batch, seq, t.medianMs,
                          t.minMs, t.flops, t.memoryBytes);
      firstJson = false;
    }
  }
  json += "\n  ]\n}\n";
  if (auto path = args.get("--json")) {
    std::ofstream f(*path);
    if (!(f << json)) throw Error(fmt::format("cannot write '{}'", *path));
  }
  return 0;
}

} // namespace kiln::tools
