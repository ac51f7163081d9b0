//===- tests/fuzz/make_seeds.cpp - writes the fuzzers' seed corpora -------===//
//
// usage: kiln_fuzz_seeds SOURCE_ROOT OUT_DIR
//
// Writes OUT_DIR/<target>/ for every fuzz target from what the tree already
// has, so that the seeds follow the examples and tests as they change:
//   dsl         every .kiln file under examples/ and tests/
//   ir          every .ir file under tests/, and the printed IR of each
//               example: its module, and the module with a training graph
//   safetensors the image of every dtype, zero-element and scalar tensors,
//               metadata; plus the tensors of each example at tiny sizes
//   checkpoint  a checkpoint as `kiln train` writes one, at tiny sizes
//   data        the committed tests/fuzz/corpus/data/ seeds
//   metrics     the committed tests/fuzz/corpus/metrics/ seeds: logs as kiln
//               train --report writes them (fresh, resumed after a kill, no
//               validation) and one of markup
// Binary seeds are made with kiln's own writers rather than committed, so a
// format change cannot leave the fuzzer mutating stale files. Each target's
// committed tests/fuzz/corpus/<target>/ is copied in as well.
//
//===----------------------------------------------------------------------===//
#include "frontend/lower.h"
#include "ir/printer.h"
#include "passes/training.h"
#include "runtime/checkpoint.h"
#include "runtime/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <fmt/format.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

using namespace kiln;
namespace fs = std::filesystem;

namespace {

void writeBytes(const fs::path &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

/// Files under `dir` (recursively) whose name ends with `suffix`, sorted so
/// that seed names are stable.
std::vector<fs::path> filesWithSuffix(const fs::path &dir, const std::string &suffix) {
  std::vector<fs::path> found;
  if (!fs::exists(dir)) return found;
  for (const auto &entry : fs::recursive_directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.size() > suffix.size() && name.ends_with(suffix)) found.push_back(entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

/// "tests/lit/dsl/x.kiln" -> "tests_lit_dsl_x.kiln": unique, flat names.
std::string flatName(const fs::path &root, const fs::path &file) {
  std::string s = fs::relative(file, root).string();
  for (char &c : s)
    if (c == '/') c = '_';
  return s;
}

void copyCommitted(const fs::path &root, const fs::path &out, const std::string &target) {
  fs::path committed = root / "tests" / "fuzz" / "corpus" / target;
  if (!fs::exists(committed)) return;
  for (const auto &entry : fs::directory_iterator(committed))
    if (entry.is_regular_file())
      fs::copy_file(entry.path(), out / target / entry.path().filename(), fs::copy_options::overwrite_existing);
}

/// Tiny hyper-parameters, so that seeds made from the examples stay small
/// (a few kilobytes) and mutations of them run fast.
const std::map<std::string, std::string> kTinyParams = {{"vocab", "12"}, {"embed", "4"}, {"hidden", "3"},
                                                         {"classes", "2"}, {"dim", "4"}};

/// Compiled under its path relative to the tree, so that the locations in
/// the printed IR do not depend on where the tree is checked out.
frontend::LoweredModel compileTiny(const fs::path &root, const fs::path &file) {
  const std::string text = frontend::readFile(file.string());
  const std::string name = fs::relative(file, root).string();
  frontend::LowerOptions options;
  frontend::LoweredModel probe = frontend::compileSource(text, name);
  for (const auto &[param, value] : probe.hyperParams)
    if (auto it = kTinyParams.find(param); it != kTinyParams.end()) options.overrides.emplace(param, it->second);
  return frontend::compileSource(text, name, options);
}

/// A parameter tensor of the given type with small deterministic values.
runtime::Tensor sampleTensor(const ir::TensorType &type) {
  std::vector<int64_t> dims;
  for (const ir::Dim &d : type.shape) dims.push_back(d.isSymbolic() ? 2 : d.value);
  runtime::Tensor t(type.dtype, dims);
  if (type.dtype == ir::DType::F32)
    for (size_t i = 0; i < t.f32().size(); ++i) t.f32()[i] = 0.25f * static_cast<float>(i % 7) - 0.5f;
  return t;
}

std::map<std::string, runtime::Tensor> parameterTensors(const ir::Module &m) {
  std::map<std::string, runtime::Tensor> out;
  for (const ir::Graph &g : m.graphs())
    for (const ir::ValueId p : g.params()) out.emplace(g.value(p).name, sampleTensor(g.value(p).type));
  return out;
}

void safetensorsSeeds(const fs::path &out, const std::vector<frontend::LoweredModel> &models) {
  using runtime::Tensor;
  runtime::SafeTensors every;
  every.tensors["f32"] = Tensor::fromF32({2, 3}, {0.0f, -1.5f, 3e38f, -0.0f, 1e-40f, 7.0f});
  every.tensors["i32"] = Tensor::fromI32({4}, {0, -1, 2147483647, -2147483647 - 1});
  every.tensors["bool"] = Tensor(ir::DType::Bool, {3});
  every.tensors["scalar"] = Tensor::fromF32({}, {42.0f});
  every.tensors["empty"] = Tensor(ir::DType::F32, {0, 5});
  every.metadata = {{"format", "pt"}, {"note", "quote \" backslash \\ unicode \xc3\xa9"}};
  writeBytes(out / "every_dtype.safetensors", runtime::serializeSafeTensors(every));

  runtime::SafeTensors bare;
  bare.tensors["w"] = Tensor::fromF32({1}, {1.0f});
  writeBytes(out / "one_tensor.safetensors", runtime::serializeSafeTensors(bare));
  writeBytes(out / "empty.safetensors", runtime::serializeSafeTensors(runtime::SafeTensors{}));

  // Dtypes kiln never writes but reads (converted on load): a hand-made
  // header, since serializeSafeTensors only emits F32, I32 and BOOL.
  std::string header = R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},)"
                       R"("b":{"dtype":"I64","shape":[1],"data_offsets":[16,24]},)"
                       R"("c":{"dtype":"I16","shape":[2],"data_offsets":[24,28]},)"
                       R"("d":{"dtype":"I8","shape":[2],"data_offsets":[28,30]},)"
                       R"("e":{"dtype":"U8","shape":[2],"data_offsets":[30,32]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string image(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) image[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  image += header;
  double f64[2] = {0.5, -2.0};
  int64_t i64 = -7;
  int16_t i16[2] = {-300, 300};
  image.append(reinterpret_cast<const char *>(f64), sizeof f64);
  image.append(reinterpret_cast<const char *>(&i64), sizeof i64);
  image.append(reinterpret_cast<const char *>(i16), sizeof i16);
  image += std::string("\xfe\x05", 2) + std::string("\x00\xff", 2);
  writeBytes(out / "converted_dtypes.safetensors", image);

  for (const frontend::LoweredModel &m : models) {
    runtime::SafeTensors weights;
    weights.tensors = parameterTensors(m.module);
    writeBytes(out / (m.name + "_weights.safetensors"), runtime::serializeSafeTensors(weights));
  }
}

void checkpointSeeds(const fs::path &out, const fs::path &root, const std::vector<frontend::LoweredModel> &models,
                     const std::vector<fs::path> &files) {
  for (size_t i = 0; i < models.size(); ++i) {
    runtime::Checkpoint c;
    c.tensors = parameterTensors(models[i].module);
    c.tensors["optimizer.fc.bias.exp_avg"] = runtime::Tensor::fromF32({2}, {0.01f, -0.02f});
    c.vocab = {"<pad>", "<unk>", "the", "free", "caf\xc3\xa9"};
    c.labels = {"ham", "spam"};
    c.modelSource = frontend::readFile(files[i].string());
    c.modelFile = flatName(root, files[i]);
    for (const auto &[name, value] : models[i].hyperParams) c.hyperParams[name] = fmt::format("{}", value);
    c.config = {{"optimizer", "adam"}, {"lr", "0.001"}, {"batch", "8"}, {"max_len", "16"}, {"seed", "1"}};
    c.epoch = 1;
    c.batch = 2;
    c.step = 9;
    runtime::saveCheckpoint((out / (models[i].name + ".ckpt")).string(), c);
  }
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 3) {
    std::cerr << "usage: kiln_fuzz_seeds SOURCE_ROOT OUT_DIR\n";
    return 2;
  }
  const fs::path root = argv[1], out = argv[2];
  const std::vector<std::string> targets = {"dsl", "ir", "safetensors", "checkpoint", "data", "metrics"};
  try {
    for (const std::string &t : targets) {
      fs::remove_all(out / t);
      fs::create_directories(out / t);
      copyCommitted(root, out, t);
    }

    for (const fs::path &dir : {root / "examples", root / "tests"})
      for (const fs::path &f : filesWithSuffix(dir, ".kiln")) fs::copy_file(f, out / "dsl" / flatName(root, f));
    for (const fs::path &f : filesWithSuffix(root / "tests", ".ir")) fs::copy_file(f, out / "ir" / flatName(root, f));

    std::vector<fs::path> exampleFiles = filesWithSuffix(root / "examples", ".kiln");
    std::vector<frontend::LoweredModel> models;
    for (const fs::path &f : exampleFiles) {
      frontend::LoweredModel m = compileTiny(root, f);
      const std::string stem = f.stem().string();
      writeBytes(out / "ir" / (stem + ".ir"), ir::printModule(m.module));
      if (const ir::Graph *forward = m.module.find("forward")) {
        ir::Module withTrain = m.module;
        withTrain.graphs().push_back(passes::buildTrainGraph(*forward, passes::OptimizerConfig{}));
        writeBytes(out / "ir" / (stem + "_train.ir"), ir::printModule(withTrain));
      }
      m.name = stem;
      models.push_back(std::move(m));
    }
    safetensorsSeeds(out / "safetensors", models);
    checkpointSeeds(out / "checkpoint", root, models, exampleFiles);
  } catch (const Error &e) {
    std::cerr << formatError(e);
    return 1;
  } catch (const std::exception &e) {
    std::cerr << "kiln_fuzz_seeds: " << e.what() << "\n";
    return 1;
  }
  for (const std::string &t : targets) {
    size_t n = 0;
    for (const auto &entry : fs::directory_iterator(out / t)) n += entry.is_regular_file();
    std::cout << t << ": " << n << " seeds\n";
  }
  return 0;
}
