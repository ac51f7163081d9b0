//===- tools/bench.cpp - kiln bench: timing steps of a model --------------===//
//
// Times, for each backend in the registry (or the one asked for), a full
// training step (forward, backward, optimizer update, with the updated
// parameters fed back as `kiln train` does) and inference at batch B and at
// batch 1, on random token batches of length T. Reports the median and the
// minimum over --repeat runs after --warmup runs, GFLOP/s from the graph's
// FLOP count (passes/flops.h), and memory: parameters, optimizer state and
// the backend's workspace. --profile adds the time per node, largest first.
// --json writes everything for bench/report.py.
//
// The backends come from backends::backendNames(), so a backend added to the
// registry is benchmarked without changes here; "auto" is an alias of
// another backend and runs only when named.
//
//===----------------------------------------------------------------------===//
#include "tools/commands.h"

#include "backends/backend.h"
#include "frontend/lower.h"
#include "ir/verifier.h"
#include "passes/flops.h"
#include "passes/training.h"
#include "runtime/distributed.h"
#include "runtime/data.h"
#include "runtime/init.h"
#include "runtime/json.h"
#include "tools/cli.h"
#include "tools/options.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <fmt/format.h>
#include <numeric>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <thread>

namespace kiln::tools {

using cli::UsageError;

namespace {

struct BenchArgs {
  std::string model;
  BackendOptions backend;
  std::string mode = "all";
  int64_t batch = 64, seq = 128, repeat = 20, warmup = 3;
  bool pad = false, profile = false;
  std::optional<std::string> json;
  std::string format = "text";
  std::vector<std::string> params;
  OptimizerOptions optimizer;
  PassOptions passes;
};

void declare(cli::Command &cmd, BenchArgs &o) {
  cmd.positional("MODEL.kiln", o.model, "the model to time");
  declareBackendOptions(cmd, o.backend, /*orAll=*/true);
  cmd.option("--mode", o.mode, "M", "what to time")
      .choices({{"train", "training steps"}, {"infer", "inference at batch B and at batch 1"}, {"all", "both"}});
  cmd.option("--batch", o.batch, "B", "batch size; inference is also timed at B=1").atLeast(1);
  cmd.option("--seq", o.seq, "T", "tokens per text").atLeast(1);
  cmd.flag("--pad", o.pad, "pad texts to random lengths in [T/4, T] (default: none)");
  cmd.option("--repeat", o.repeat, "N", "timed runs (5x that for inference at B=1)");
  cmd.option("--warmup", o.warmup, "N", "untimed runs first");
  cmd.flag("--profile", o.profile, "time per node, top 15 (every node in --json) (backends that can profile)");
  cmd.option("--json", o.json, "FILE", "write the results as JSON");
  cmd.option("--format", o.format, "F", "what standard output gets")
      .choices({{"text", "the results for people"},
                {"json", "the JSON document of --json (the text goes to standard error)"}});
  declareParamOption(cmd, o.params);
  cmd.section("training step");
  declareOptimizerOptions(cmd, o.optimizer);
  declarePassOptions(cmd, o.passes);
  cmd.epilogue(R"(compile = the backend's time to build the plan of that shape (its primitives
and generated code), paid once per shape; absent for a backend that builds none.
memory = parameters + optimizer state (training) + the backend's workspace
(its arena, or its peak of live intermediates); "workspace n/a" when the
backend does not report one. Each result ends with the number of worker
threads the backend ran it on (a backend may run small plans on fewer than
--threads). The last line gives the growth of the process's peak resident
memory over the whole command, which is comparable to bench/torch_bench.py's
figure when one backend and one mode run.)");
}

/// One timed configuration of one backend.
struct Timing {
  std::string what; ///< train | infer | infer_b1
  int64_t batch = 0;
  int threads = 0; ///< as the backend reports it
  double compileMs = 0; ///< the backend's compile time of the plan timed
  double medianMs = 0, minMs = 0;
  int64_t flops = 0;
  int64_t paramBytes = 0, stateBytes = 0, workspaceBytes = 0;
  std::vector<runtime::NodeTiming> profile;
  /// The graph the profile's node ids index: the one the backend ran,
  /// after the pass pipeline.
  std::shared_ptr<const ir::Graph> graph;
  /// A data-parallel step (under mpirun): the processes, the mean time of
  /// each part per step (rank 0's), what it sends, and the exchange alone.
  struct Parallel {
    int processes = 0;
    double gradientMs = 0, exchangeMs = 0, updateMs = 0;
    int64_t denseBytes = 0, rowBytesPerStep = 0, tableBytes = 0;
    double exchangeAloneMedianMs = 0, exchangeAloneMinMs = 0;
  };
  std::optional<Parallel> parallel;

  int64_t memoryBytes() const { return paramBytes + stateBytes + workspaceBytes; }
};

/// Runs `once` warmup times untimed, then repeat times timed; the median is
/// what bench/run compares (robust to the odd slow run on a shared VM), the
/// minimum shows the spread.
template <typename F> void timeRuns(Timing &t, int warmup, int repeat, F &&once) {
  for (int i = 0; i < warmup; ++i) once();
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    once();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  t.medianMs = ms.size() % 2 ? ms[ms.size() / 2] : (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]) / 2;
  t.minMs = ms.front();
}

/// Token ids in [2, vocab): 0 is <pad> and 1 is <unk>, which real batches
/// have few of. With `pad`, each text but the first gets a random length in
/// [T/4, T] and zeros after it, as the trainer's batches padded to their
/// longest text look; the first keeps all T tokens so the batch is T long.
runtime::Tensor randomTokens(int64_t batch, int64_t seq, int64_t vocab, bool pad, std::mt19937 &rng) {
  std::uniform_int_distribution<int64_t> id(2, vocab - 1);
  std::uniform_int_distribution<int64_t> length(std::max<int64_t>(1, seq / 4), seq);
  runtime::Tensor t(ir::DType::I32, {batch, seq});
  auto ids = t.i32();
  for (int64_t r = 0; r < batch; ++r) {
    int64_t n = pad && r > 0 ? length(rng) : seq;
    for (int64_t c = 0; c < seq; ++c) ids[r * seq + c] = c < n ? static_cast<int32_t>(id(rng)) : 0;
  }
  return t;
}

/// The token ids and, for each input the model derives from them, random
/// n-gram ids where a full n-gram ends (0 elsewhere, as the pipeline makes them).
runtime::TensorMap withDerivedInputs(const runtime::InputRecipe &recipe, const runtime::Tensor &tokens,
                                     std::mt19937 &rng) {
  runtime::TensorMap inputs = {{recipe.tokens, tokens}};
  int64_t rows = tokens.shape()[0], seq = tokens.shape()[1];
  for (const runtime::DerivedInput &d : recipe.derived) {
    std::uniform_int_distribution<int64_t> id(1, d.buckets - 1);
    runtime::Tensor t(ir::DType::I32, {rows, seq});
    auto ids = t.i32();
    auto toks = tokens.i32();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < seq; ++c)
        ids[r * seq + c] = c + 1 >= d.n && toks[r * seq + c] != 0 ? static_cast<int32_t>(id(rng)) : 0;
    inputs.emplace(d.name, std::move(t));
  }
  return inputs;
}

/// Bytes of g's parameters (their dims are always constants).
int64_t paramsBytes(const ir::Graph &g) {
  int64_t b = 0;
  for (ir::ValueId p : g.params())
    b += ir::numElements(*ir::concreteShape(g.type(p).shape, {})) * static_cast<int64_t>(ir::dtypeSize(g.type(p).dtype));
  return b;
}

/// A field of /proc/self/status in bytes (VmRSS, VmHWM); -1 when unreadable.
int64_t procStatusBytes(const std::string &field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field + ":", 0) == 0) return std::atoll(line.c_str() + field.size() + 1) * 1024;
  return -1;
}

/// Resets the kernel's high-water mark of resident memory (VmHWM) to the
/// current RSS, so that the peak read at the end belongs to this command
/// alone (Linux >= 4.0; harmless where unsupported).
void resetPeakRss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

std::string mib(int64_t bytes) { return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / 1048576.0); }

/// The nodes of a profile, largest total time first: the top `limit` of them.
std::vector<runtime::NodeTiming> topNodes(std::vector<runtime::NodeTiming> p, double &total, size_t limit = 15) {
  total = 0;
  for (const auto &t : p) total += t.seconds;
  std::stable_sort(p.begin(), p.end(), [](const auto &a, const auto &b) { return a.seconds > b.seconds; });
  if (p.size() > limit) p.resize(limit);
  return p;
}

/// `file.kiln:line:col` of the DSL expression a node came from (the file
/// without its directory: the model file is named in the header already).
std::string nodeLoc(const ir::Node &n) {
  if (n.locs.empty()) return "";
  const std::string &file = n.locs[0].file;
  return fmt::format("{}:{}:{}", file.substr(file.find_last_of('/') + 1), n.locs[0].line, n.locs[0].col);
}

void printProfile(std::FILE *out, const std::vector<runtime::NodeTiming> &profile, const ir::Graph &g) {
  if (profile.empty()) {
    fmt::print(out, "    (no profile from this backend)\n");
    return;
  }
  double total = 0;
  for (const auto &t : topNodes(profile, total)) {
    const ir::Node &n = g.nodes()[static_cast<size_t>(t.node)];
    fmt::print(out, "    {:8.3f} ms {:5.1f}%  {:<34} {:<16} {}\n", t.seconds * 1e3 / static_cast<double>(std::max<int64_t>(t.calls, 1)),
               100 * t.seconds / std::max(total, 1e-12), t.label, g.type(n.result).str(), nodeLoc(n));
  }
}

/// Every step of the profile (the text shows the top 15).
std::string profileJson(const std::vector<runtime::NodeTiming> &profile, const ir::Graph &g) {
  double total = 0;
  std::string out;
  for (const auto &t : topNodes(profile, total, profile.size())) {
    const ir::Node &n = g.nodes()[static_cast<size_t>(t.node)];
    out += fmt::format("{}{{\"label\": {}, \"type\": {}, \"loc\": {}, \"ms_per_call\": {:.6f}, \"percent\": {:.2f}}}",
                       out.empty() ? "" : ", ", json::quote(t.label), json::quote(g.type(n.result).str()),
                       json::quote(nodeLoc(n)), t.seconds * 1e3 / static_cast<double>(std::max<int64_t>(t.calls, 1)),
                       100 * t.seconds / std::max(total, 1e-12));
  }
  return "[" + out + "]";
}

/// The backends --backend NAME|all selects: every registered one but the
/// default (an alias of another) for all, or exactly the one named.
std::vector<std::string> selectBackends(const std::string &which) {
  if (which != kAllBackends) return {which};
  std::vector<std::string> out;
  for (const std::string &name : backends::backendNames())
    if (name != backends::kDefaultBackend) out.push_back(name);
  return out;
}

/// The rows [first, last) of a tensor's first dim.
runtime::Tensor rowsOf(const runtime::Tensor &t, int64_t first, int64_t last) {
  std::vector<int64_t> shape = t.shape();
  int64_t width = static_cast<int64_t>(t.byteSize()) / std::max<int64_t>(shape[0], 1);
  shape[0] = last - first;
  runtime::Tensor part(t.dtype(), shape);
  std::copy(t.raw() + first * width, t.raw() + last * width, part.raw());
  return part;
}

/// The data-parallel training step (runtime/distributed.h) on this rank's
/// rows of the batch, timed as timeRuns does, then the exchange of the
/// gradients alone (sums of the gradient tensors, in the step's buckets).
Timing timeDataParallelStep(runtime::Communicator &comm, const ir::Graph &forward,
                            const passes::OptimizerConfig &optimizer, const BackendOptions &backend,
                            const PassOptions &passOptions, const ir::Graph &train, const runtime::TensorMap &batchInputs,
                            const runtime::Tensor &labels, int warmup, int repeat, std::FILE *human) {
  std::unique_ptr<CompiledSplitStep> compiled =
      compileSplitStep(passes::buildSplitStep(forward, optimizer), comm, backend, passOptions);
  const runtime::DataParallel &dp = compiled->dataParallel;
  runtime::Executable *gradients = compiled->gradients.get(), *update = compiled->update.get();
  runtime::DataParallelStep parallel(dp);
  int64_t batch = labels.shape()[0], ranks = comm.size();
  int64_t first = batch * comm.rank() / ranks, last = batch * (comm.rank() + 1) / ranks;
  runtime::TensorMap part;
  for (const auto &[name, t] : batchInputs) part.emplace(name, rowsOf(t, first, last));
  part.emplace("labels", rowsOf(labels, first, last));
  runtime::TensorMap store = runtime::materializeParams(train, {}, 0), out;
  std::vector<int32_t> batchRows(static_cast<size_t>(last - first));
  std::iota(batchRows.begin(), batchRows.end(), static_cast<int32_t>(first));
  int step = 0;
  Timing t;
  t.what = "train";
  t.batch = batch;
  auto once = [&] {
    ++step;
    parallel.addStepInputs(part, static_cast<double>(last - first) / static_cast<double>(batch), step, batchRows);
    parallel.computeGradients(&part, store);
    std::array<double, 1> loss{parallel.gradientOutputs().at("loss").f32()[0]};
    parallel.update(loss, 1e-3, step, store, out);
    for (auto &[name, v] : out)
      if (auto it = store.find(name); it != store.end()) std::swap(it->second, v);
  };
  for (int i = 0; i < warmup; ++i) once();
  parallel.resetTotals(); // the parts' times of the timed steps only
  timeRuns(t, 0, repeat, once);
  fmt::print(human, "  step: {}\n", parallel.summary());
  Timing exchange;
  timeRuns(exchange, warmup, repeat, [&] {
    std::array<double, 1> nothing{0};
    parallel.exchange(nothing);
  });
  fmt::print(human, "  the exchange alone: median {:.3f} ms, min {:.3f} ms for {:.2f} MB of dense gradients{}\n",
             exchange.medianMs, exchange.minMs, static_cast<double>(parallel.totals().denseBytes) / 1e6,
             dp.rowTables.empty() ? "" : " (the rows' gather is in the step's exchange, not here)");
  t.workspaceBytes = gradients->workspaceBytes() + update->workspaceBytes();
  t.threads = gradients->threads();
  t.compileMs = (gradients->compileSeconds() + update->compileSeconds()) * 1e3;
  t.graph = std::make_shared<const ir::Graph>(gradients->graph());
  const runtime::DataParallelStep::Totals &totals = parallel.totals();
  double steps = static_cast<double>(std::max<int64_t>(totals.steps, 1));
  t.parallel = Timing::Parallel{.processes = comm.size(),
                                .gradientMs = totals.gradientSeconds * 1e3 / steps,
                                .exchangeMs = totals.exchangeSeconds * 1e3 / steps,
                                .updateMs = totals.updateSeconds * 1e3 / steps,
                                .denseBytes = totals.denseBytes,
                                .rowBytesPerStep = static_cast<int64_t>(static_cast<double>(totals.rowBytes) / steps),
                                .tableBytes = totals.tableBytes,
                                .exchangeAloneMedianMs = exchange.medianMs,
                                .exchangeAloneMinMs = exchange.minMs};
  return t;
}

} // namespace

int cmdBench(int argc, char **argv) {
  resetPeakRss();
  int64_t rssAtStart = procStatusBytes("VmRSS");
  BenchArgs o;
  cli::Command cmd("bench", "MODEL.kiln [options]",
                   "Times a training step (forward + backward + optimizer update, parameters fed\n"
                   "back as in training) and inference at batch B and at batch 1, on random\n"
                   "token batches, for every backend or the one named.");
  declare(cmd, o);
  if (listPassesRequested(argc, argv)) return fmt::print("{}", listPasses()), 0;
  if (!cmd.parse(argc, argv, 2)) return 0;
  const std::string &modelFile = o.model, &mode = o.mode;
  int64_t batch = o.batch, seq = o.seq;
  int repeat = static_cast<int>(std::clamp<int64_t>(o.repeat, 1, 1'000'000));
  int warmup = static_cast<int>(std::min<int64_t>(o.warmup, 1'000'000));
  bool profiling = o.profile, pad = o.pad;
  std::vector<std::string> backendsToRun = selectBackends(o.backend.backend);
  // Under mpirun, the training step is the data-parallel one: each rank
  // runs its rows of the batch, and the gradients are summed (as
  // `mpirun -np N kiln train` runs it); rank 0 reports.
  runtime::Communicator *comm = nullptr;
  if (runtime::launchedByMpi()) {
    if (mode != "train")
      throw UsageError("under mpirun, kiln bench times the data-parallel training step only: pass --mode train");
    comm = &runtime::startMpi();
    useDataParallelBackend(o.backend);
    if (batch < comm->size())
      throw UsageError(fmt::format("--batch {} has fewer rows than the {} processes", batch, comm->size()));
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE *)> quiet(nullptr, std::fclose);
  if (comm && comm->rank() != 0) {
    quiet.reset(std::fopen("/dev/null", "w"));
    if (!quiet) throw Error("cannot open /dev/null");
  }

  frontend::LowerOptions lowerOpts;
  lowerOpts.overrides = paramOverrides(o.params);
  frontend::LoweredModel model = frontend::compileFile(modelFile, lowerOpts);
  const ir::Graph *forward = model.module.find("forward");
  if (!forward) throw Error(fmt::format("{}: the model has no fn forward", modelFile));
  passes::OptimizerConfig optimizer = optimizerConfig(o.optimizer);
  optimizer.outputGradients = false; // as kiln train runs it: gradients stay inside the step
  ir::Graph train = passes::buildTrainGraph(*forward, optimizer);
  ir::verify(train);
  int64_t vocab = 0, classes = 2;
  for (auto &[name, v] : model.hyperParams) {
    if (name == "vocab") vocab = static_cast<int64_t>(v);
    if (name == "classes") classes = static_cast<int64_t>(v);
  }
  if (vocab < 3) throw Error(fmt::format("{}: bench needs a param vocab of at least 3 (ids 0 and 1 are <pad> and <unk>)", modelFile));
  runtime::InputRecipe recipe = runtime::inputRecipe(*forward);
  runtime::CompileOptions copts = o.backend.compileOptions();

  // One batch for every backend and step, so all of them do the same work.
  std::mt19937 rng(1);
  runtime::Tensor tokens = randomTokens(batch, seq, vocab, pad, rng), single = randomTokens(1, seq, vocab, pad, rng);
  runtime::TensorMap batchInputs = withDerivedInputs(recipe, tokens, rng),
                     singleInputs = withDerivedInputs(recipe, single, rng);
  runtime::Tensor labels(ir::DType::I32, {batch});
  for (int32_t &l : labels.i32()) l = static_cast<int32_t>(rng() % static_cast<uint32_t>(classes));
  int64_t paramBytes = paramsBytes(*forward), stateBytes = paramsBytes(train) - paramBytes;

  int threads = copts.threads ? copts.threads : static_cast<int>(std::thread::hardware_concurrency());
  // With --format json, standard output is the JSON document alone.
  std::FILE *human = quiet ? quiet.get() : o.format == "json" ? stderr : stdout;
  fmt::print(human, "{}: B={} T={} vocab={}{} | {} parameter tensors, {} (+{} optimizer state) | {} runs after {} warm-up | "
             "--threads {}\n",
             modelFile, batch, seq, vocab, pad ? " padded" : "", forward->params().size(), mib(paramBytes), mib(stateBytes),
             repeat, warmup, copts.threads ? std::to_string(copts.threads) : "0 (all cores)");
  if (comm) fmt::print(human, "data-parallel: {} processes, each with its {} or {} rows of the batch\n", comm->size(),
                       batch / comm->size(), (batch + comm->size() - 1) / comm->size());
  std::string results;
  for (const std::string &backend : backendsToRun) {
    BackendOptions chosen = o.backend;
    chosen.backend = backend;
    std::vector<Timing> timings;
    if (mode != "infer" && comm) {
      timings.push_back(timeDataParallelStep(*comm, *forward, optimizer, chosen, o.passes, train, batchInputs, labels,
                                             warmup, repeat, human));
      timings.back().flops = passes::graphFlops(train, {{"B", batch}, {"T", seq}});
      timings.back().paramBytes = paramBytes;
      timings.back().stateBytes = stateBytes;
    } else if (mode != "infer") {
      auto exe = compileGraph(train, chosen, o.passes);
      exe->setProfiling(profiling);
      // Materialised per backend rather than copied from one master set, so
      // that the process holds one set at a time and its peak RSS (the last
      // line) is what a training run would need. The seed makes every
      // backend start from the same values.
      runtime::TensorMap store = runtime::materializeParams(train, {}, 0);
      int step = 0;
      Timing t;
      t.what = "train";
      t.batch = batch;
      runtime::TensorMap out;
      timeRuns(t, warmup, repeat, [&] {
        ++step;
        runtime::TensorMap stepInputs = batchInputs;
        stepInputs.emplace("labels", labels);
        stepInputs.emplace("lr", runtime::Tensor::fromF32({}, {1e-3f}));
        stepInputs.emplace("step", runtime::Tensor::fromF32({}, {static_cast<float>(step)}));
        exe->runInto(stepInputs, store, out);
        // The update protocol of the trainer (runtime/trainer.cpp): each
        // output replaces the store entry of the same name (new parameters
        // and optimizer state), and the old tensor takes the output's place,
        // to be written by the next step.
        for (auto &[name, v] : out)
          if (auto it = store.find(name); it != store.end()) std::swap(it->second, v);
      });
      t.flops = passes::graphFlops(train, {{"B", batch}, {"T", seq}});
      t.paramBytes = paramBytes;
      t.stateBytes = stateBytes;
      t.workspaceBytes = exe->workspaceBytes();
      t.threads = exe->threads();
      t.compileMs = exe->compileSeconds() * 1e3;
      t.profile = exe->profile();
      t.graph = std::make_shared<const ir::Graph>(exe->graph());
      timings.push_back(std::move(t));
    }
    if (mode != "train") {
      auto exe = compileGraph(*forward, chosen, o.passes);
      runtime::TensorMap modelParams = runtime::materializeParams(*forward, {}, 0);
      for (int64_t b : {batch, int64_t{1}}) {
        // Profile the full batch only: batch 1 is dominated by per-node overhead.
        exe->setProfiling(profiling && b == batch);
        Timing t;
        t.what = b == batch ? "infer" : "infer_b1";
        t.batch = b;
        const runtime::TensorMap &input = b == batch ? batchInputs : singleInputs;
        // Batch-1 runs are short; more of them steady the median.
        timeRuns(t, warmup, repeat * (b == batch ? 1 : 5), [&] { exe->run(input, modelParams); });
        t.flops = passes::graphFlops(*forward, {{"B", b}, {"T", seq}});
        t.paramBytes = paramBytes;
        t.workspaceBytes = exe->workspaceBytes();
        t.threads = exe->threads();
        t.compileMs = exe->compileSeconds() * 1e3;
        if (b == batch) t.profile = exe->profile();
        t.graph = std::make_shared<const ir::Graph>(exe->graph());
        timings.push_back(std::move(t));
        if (batch == 1) break;
      }
    }
    for (const Timing &t : timings) {
      std::string label = t.what == "train" ? fmt::format("train step B={}", t.batch) : fmt::format("inference B={}", t.batch);
      std::string memory = t.what == "train" ? fmt::format("params+state {}", mib(t.paramBytes + t.stateBytes))
                                             : fmt::format("params {}", mib(t.paramBytes));
      memory += t.workspaceBytes ? fmt::format(" + workspace {}", mib(t.workspaceBytes)) : " + workspace n/a";
      std::string threadsUsed = t.threads ? fmt::format("{} thread{}", t.threads, t.threads == 1 ? "" : "s")
                                          : std::string("threads n/a");
      std::string compiled = t.compileMs > 0 ? fmt::format("compile {:.0f} ms  ", t.compileMs) : "";
      fmt::print(human, "  {:<10} {:<17} median {:9.3f} ms  min {:9.3f} ms  {:7.1f} GFLOP/s ({:.3f} GFLOP)  {}memory {} ({})  "
                 "{}\n",
                 backend, label, t.medianMs, t.minMs, static_cast<double>(t.flops) / (t.medianMs * 1e6),
                 static_cast<double>(t.flops) / 1e9, compiled, mib(t.memoryBytes()), memory, threadsUsed);
      const ir::Graph &g = *t.graph;
      if (profiling && t.what != "infer_b1") printProfile(human, t.profile, g);
      results += fmt::format(
          "{}\n    {{\"backend\": {}, \"what\": \"{}\", \"batch\": {}, \"seq\": {}, \"median_ms\": {:.6f}, "
          "\"min_ms\": {:.6f}, \"flops\": {}, \"gflops_per_s\": {:.3f}, \"param_bytes\": {}, \"state_bytes\": {}, "
          "\"workspace_bytes\": {}, \"memory_bytes\": {}, \"threads\": {}, \"compile_ms\": {:.3f}, \"profile\": {}{}}}",
          results.empty() ? "" : ",", json::quote(backend), t.what, t.batch, seq, t.medianMs, t.minMs, t.flops,
          static_cast<double>(t.flops) / (t.medianMs * 1e6), t.paramBytes, t.stateBytes, t.workspaceBytes,
          t.memoryBytes(), t.threads, t.compileMs, profiling && t.what != "infer_b1" ? profileJson(t.profile, g) : "null",
          !t.parallel ? std::string()
                      : fmt::format(", \"processes\": {}, \"gradients_ms\": {:.6f}, \"exchange_ms\": {:.6f}, "
                                    "\"update_ms\": {:.6f}, \"dense_gradient_bytes\": {}, \"row_bytes_per_step\": {}, \"row_table_bytes\": {}, "
                                    "\"exchange_alone_median_ms\": {:.6f}, \"exchange_alone_min_ms\": {:.6f}",
                                    t.parallel->processes, t.parallel->gradientMs, t.parallel->exchangeMs,
                                    t.parallel->updateMs, t.parallel->denseBytes, t.parallel->rowBytesPerStep, t.parallel->tableBytes,
                                    t.parallel->exchangeAloneMedianMs, t.parallel->exchangeAloneMinMs));
    }
  }
  int64_t peak = procStatusBytes("VmHWM");
  int64_t rssGrowth = peak >= 0 && rssAtStart >= 0 ? peak - rssAtStart : -1;
  if (rssGrowth >= 0) fmt::print(human, "process peak RSS grew by {} during this command\n", mib(rssGrowth));

  if ((o.json || o.format == "json") && !quiet) {
    std::string backendList;
    for (const std::string &b : backendsToRun) backendList += (backendList.empty() ? "" : ", ") + json::quote(b);
    std::string text = fmt::format(
        "{{\n  \"model\": {},\n  \"batch\": {},\n  \"seq\": {},\n  \"vocab\": {},\n  \"pad\": {},\n  \"threads\": {},\n"
        "  \"repeat\": {},\n  \"warmup\": {},\n  \"mode\": \"{}\",\n  \"backends\": [{}],\n"
        "  \"peak_rss_growth_bytes\": {},\n  \"results\": [{}\n  ]\n}}\n",
        json::quote(modelFile), batch, seq, vocab, pad, threads, repeat, warmup, mode, backendList, rssGrowth, results);
    if (o.format == "json") fmt::print("{}", text);
    if (const auto &path = o.json) {
      std::ofstream f(*path);
      if (!(f << text)) throw Error(fmt::format("cannot write '{}'", *path));
    }
  }
  return 0;
}

} // namespace kiln::tools
