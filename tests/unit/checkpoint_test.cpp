//===- tests/unit/checkpoint_test.cpp - training checkpoints --------------===//
//
// A round trip of every field and of f32 and i32 tensors, the model/optimizer
// split, and one test per metadata rule the loader enforces, each built as a
// safetensors file with crafted metadata so that only that rule is broken.
// Every error must be a kiln::Error located at the file (so the driver
// prints `path: error: ...`) whose message names the offending key; plain
// weight files and truncated checkpoints are errors too, never crashes.
//
//===----------------------------------------------------------------------===//
#include "runtime/checkpoint.h"
#include "runtime/safetensors.h"

#include "ir/diagnostic.h"

#include <cstring>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <limits>
#include <unistd.h>

using namespace kiln;
using namespace kiln::runtime;
namespace fs = std::filesystem;

namespace {

/// A fresh directory under the system temp dir, removed at scope exit.
struct CkptDir {
  fs::path path;
  CkptDir() {
    std::string tmpl = (fs::temp_directory_path() / "kiln-ckpt-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~CkptDir() { fs::remove_all(path); }
  std::string file(const std::string &name) const { return (path / name).string(); }
};

bool sameTensor(const Tensor &a, const Tensor &b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.byteSize() == b.byteSize() &&
         // Zero-element tensors have no buffer, and memcmp(nullptr, ...) is UB.
         (a.byteSize() == 0 || std::memcmp(a.raw(), b.raw(), a.byteSize()) == 0);
}

Checkpoint sampleCheckpoint() {
  Checkpoint c;
  c.tensors["embedding.weight"] = Tensor::fromF32({3, 2}, {0.5f, -1.25f, 3e-8f, 1e30f, -0.0f, 7.0f});
  c.tensors["fc.bias"] = Tensor::fromF32({2}, {0.25f, -0.75f});
  c.tensors["optimizer.fc.bias.m"] = Tensor::fromF32({2}, {0.01f, -0.02f});
  c.tensors["optimizer.fc.bias.v"] = Tensor::fromF32({2}, {1e-4f, 4e-4f});
  c.tensors["optimizer.step"] = Tensor::fromI32({}, {1234});
  c.tensors["counts"] = Tensor::fromI32({2, 2}, {0, -1, INT32_MAX, INT32_MIN});
  // Strings that need escaping in JSON, and non-ASCII text, in every field.
  c.vocab = {"<pad>", "<unk>", "the", "\"quoted\"", "back\\slash", "caf\xc3\xa9", "tab\there"};
  c.labels = {"ham", "spam", "\xe6\x97\xa5\xe6\x9c\xac"};
  c.modelSource = "param vocab = 10000\n# a \"comment\" with a \\ and a tab\t\nmodel M { }\n";
  c.modelFile = "examples/classifier_additive.kiln";
  c.hyperParams = {{"vocab", "7"}, {"classes", "3"}, {"dim", "64"}};
  c.config = {{"optimizer", "adam"}, {"lr", "0.001"}, {"max_len", "256"}, {"schedule", "cosine"}};
  c.epoch = 3;
  c.batch = 17;
  c.step = int64_t(1) << 40; // beyond 32 bits and beyond a float's exact range
  return c;
}

/// The metadata saveCheckpoint writes for a small valid checkpoint; tests
/// break one entry at a time.
std::map<std::string, std::string> validMetadata() {
  return {{"format", "kiln-checkpoint-1"},
          {"vocab", R"(["<pad>","<unk>","a"])"},
          {"labels", R"(["neg","pos"])"},
          {"model_source", "model M {}"},
          {"model_file", "m.kiln"},
          {"hyper_params", R"({"dim":"8"})"},
          {"config", R"({"lr":"0.1"})"},
          {"epoch", "1"},
          {"batch", "0"},
          {"step", "10"}};
}

/// Writes a safetensors file with the given metadata and one tensor.
std::string writeWithMetadata(const CkptDir &dir, const std::map<std::string, std::string> &md) {
  SafeTensors st;
  st.tensors["w"] = Tensor::fromF32({2}, {1.0f, 2.0f});
  st.metadata = md;
  std::string p = dir.file("crafted.safetensors");
  writeSafeTensors(p, st);
  return p;
}

/// Loads `path` expecting a kiln::Error located at it whose message
/// contains every one of `parts`.
void expectLoadError(const std::string &path, const std::vector<std::string> &parts) {
  try {
    loadCheckpoint(path);
    FAIL("loaded without error, expected: ", parts.front());
  } catch (const Error &e) {
    CHECK(e.loc().file == path);
    CHECK(e.loc().line == 0);
    for (const std::string &p : parts) CHECK_MESSAGE(e.message().find(p) != std::string::npos, e.message());
  }
}

/// Breaks one metadata entry and expects an error naming that key.
void expectBadValue(const std::string &key, const std::string &value, const std::string &why) {
  CAPTURE(key);
  CAPTURE(value);
  CkptDir dir;
  auto md = validMetadata();
  md[key] = value;
  expectLoadError(writeWithMetadata(dir, md), {"\"" + key + "\"", why});
}

} // namespace

TEST_CASE("checkpoint: round trip of every field and of f32 and i32 tensors") {
  CkptDir dir;
  Checkpoint c = sampleCheckpoint();
  std::string p = dir.file("model.ckpt.safetensors");
  saveCheckpoint(p, c);
  Checkpoint r = loadCheckpoint(p);

  CHECK(r.vocab == c.vocab);
  CHECK(r.labels == c.labels);
  CHECK(r.modelSource == c.modelSource);
  CHECK(r.modelFile == c.modelFile);
  CHECK(r.hyperParams == c.hyperParams);
  CHECK(r.config == c.config);
  CHECK(r.epoch == 3);
  CHECK(r.batch == 17);
  CHECK(r.step == int64_t(1) << 40);
  REQUIRE(r.tensors.size() == c.tensors.size());
  for (const auto &[name, t] : c.tensors) {
    CAPTURE(name);
    REQUIRE(r.tensors.count(name));
    CHECK(sameTensor(r.tensors.at(name), t));
  }

  // Saving again over the same path replaces the file (atomic rename).
  c.step += 1;
  saveCheckpoint(p, c);
  CHECK(loadCheckpoint(p).step == (int64_t(1) << 40) + 1);
}

TEST_CASE("checkpoint: a selected epoch's parameters are the file's model, the last step's resume") {
  CkptDir dir;
  Checkpoint c = sampleCheckpoint();
  c.selection = {2, 0.125, 1, 0.5, false};
  c.selected["fc.bias"] = Tensor::fromF32({2}, {9.0f, -9.0f});
  std::string p = dir.file("selected.ckpt.safetensors");
  saveCheckpoint(p, c);
  // In the file, fc.bias is the selected epoch's, last.fc.bias the last step's.
  SafeTensors st = readSafeTensors(p);
  CHECK(sameTensor(st.tensors.at("fc.bias"), c.selected.at("fc.bias")));
  CHECK(sameTensor(st.tensors.at("last.fc.bias"), c.tensors.at("fc.bias")));
  Checkpoint r = loadCheckpoint(p);
  CHECK(r.tensors.size() == c.tensors.size());
  CHECK(sameTensor(r.tensors.at("fc.bias"), c.tensors.at("fc.bias")));
  REQUIRE(r.selected.size() == 1);
  CHECK(sameTensor(r.selected.at("fc.bias"), c.selected.at("fc.bias")));
  CHECK(r.selection.bestEpoch == 2);
  CHECK(r.selection.bestScore == 0.125);
  CHECK(r.selection.epochsSinceBest == 1);
  CHECK(r.selection.lrScale == 0.5);
  CHECK(!r.selection.stopped);
  // modelTensors: the selected parameters, the rest as they are, no optimizer state.
  auto model = modelTensors(r);
  CHECK(sameTensor(model.at("fc.bias"), c.selected.at("fc.bias")));
  CHECK(sameTensor(model.at("embedding.weight"), c.tensors.at("embedding.weight")));
  CHECK(!model.count("optimizer.step"));
  CHECK(!model.count("last.fc.bias"));

  // A last.NAME without NAME is refused, naming both.
  st.tensors.erase("fc.bias");
  writeSafeTensors(p, st);
  CHECK_THROWS_WITH_AS(loadCheckpoint(p), doctest::Contains("'last.fc.bias' is the last step's value of 'fc.bias'"),
                       Error);
}

TEST_CASE("checkpoint: empty maps and model file, and zero position, round trip") {
  CkptDir dir;
  Checkpoint c;
  c.vocab = {"<pad>", "<unk>"};
  c.labels = {"only"};
  std::string p = dir.file("min.safetensors");
  saveCheckpoint(p, c);
  Checkpoint r = loadCheckpoint(p);
  CHECK(r.vocab == c.vocab);
  CHECK(r.labels == c.labels);
  CHECK(r.modelSource.empty());
  CHECK(r.modelFile.empty());
  CHECK(r.hyperParams.empty());
  CHECK(r.config.empty());
  CHECK(r.epoch == 0);
  CHECK(r.batch == 0);
  CHECK(r.step == 0);
  CHECK(r.tensors.empty());
}

TEST_CASE("checkpoint: the file is plain safetensors with the documented metadata") {
  // What a Python user sees with safetensors.safe_open(...).metadata().
  CkptDir dir;
  Checkpoint c = sampleCheckpoint();
  std::string p = dir.file("c.safetensors");
  saveCheckpoint(p, c);
  SafeTensors st = readSafeTensors(p);
  CHECK(st.metadata.at("format") == "kiln-checkpoint-1");
  CHECK(st.metadata.at("labels") == "[\"ham\",\"spam\",\"\xe6\x97\xa5\xe6\x9c\xac\"]");
  CHECK(st.metadata.at("hyper_params") == R"({"classes":"3","dim":"64","vocab":"7"})");
  CHECK(st.metadata.at("epoch") == "3");
  CHECK(st.metadata.at("step") == "1099511627776");
  CHECK(st.metadata.at("model_source") == c.modelSource);
  CHECK(st.tensors.size() == c.tensors.size());
}

TEST_CASE("checkpoint: modelTensors leaves out exactly the optimizer. prefix") {
  Checkpoint c = sampleCheckpoint();
  c.tensors["optimizer_like.weight"] = Tensor::fromF32({1}, {1.0f}); // no dot: a parameter
  c.tensors["enc.optimizer.weight"] = Tensor::fromF32({1}, {2.0f});  // prefix elsewhere: a parameter
  auto m = modelTensors(c);
  std::vector<std::string> names;
  for (const auto &kv : m) names.push_back(kv.first);
  CHECK(names == std::vector<std::string>{"counts", "embedding.weight", "enc.optimizer.weight", "fc.bias",
                                          "optimizer_like.weight"});
  CHECK(sameTensor(m.at("fc.bias"), c.tensors.at("fc.bias")));
  CHECK(c.tensors.size() == m.size() + 3); // the input is left as it was
}

TEST_CASE("checkpoint: the crafted valid metadata loads") {
  // Guards the error tests below: each breaks one entry of this metadata,
  // so it must itself be accepted.
  CkptDir dir;
  Checkpoint c = loadCheckpoint(writeWithMetadata(dir, validMetadata()));
  CHECK(c.vocab == std::vector<std::string>{"<pad>", "<unk>", "a"});
  CHECK(c.labels == std::vector<std::string>{"neg", "pos"});
  CHECK(c.step == 10);
  CHECK(c.tensors.count("w") == 1);
}

TEST_CASE("checkpoint: a safetensors file without \"format\" is not a kiln checkpoint") {
  CkptDir dir;
  // Plain weights as PyTorch's save_file writes them: no metadata at all.
  SafeTensors st;
  st.tensors["fc.weight"] = Tensor::fromF32({1, 2}, {1.0f, 2.0f});
  std::string p = dir.file("weights.safetensors");
  writeSafeTensors(p, st);
  expectLoadError(p, {"not a kiln checkpoint", "\"format\"", "PyTorch"});

  // The driver prints it as `path: error: ...`.
  try {
    loadCheckpoint(p);
  } catch (const Error &e) {
    CHECK(formatError(e).rfind(p + ": error: not a kiln checkpoint", 0) == 0);
  }

  // Other metadata but no format: still the same message, not "vocab is missing".
  auto md = validMetadata();
  md.erase("format");
  expectLoadError(writeWithMetadata(dir, md), {"not a kiln checkpoint"});
}

TEST_CASE("checkpoint: another format version is rejected") {
  CkptDir dir;
  auto md = validMetadata();
  md["format"] = "kiln-checkpoint-2";
  expectLoadError(writeWithMetadata(dir, md), {"unsupported checkpoint format", "kiln-checkpoint-2"});
}

TEST_CASE("checkpoint: every required key must be present") {
  for (const char *key :
       {"vocab", "labels", "model_source", "model_file", "hyper_params", "config", "epoch", "batch", "step"}) {
    CAPTURE(key);
    CkptDir dir;
    auto md = validMetadata();
    md.erase(key);
    expectLoadError(writeWithMetadata(dir, md), {std::string("\"") + key + "\"", "is missing"});
  }
}

TEST_CASE("checkpoint: list and object values must be well-formed JSON") {
  for (const char *key : {"vocab", "labels", "hyper_params", "config"}) {
    expectBadValue(key, "[\"<pad>\", ", "is not valid JSON");
    expectBadValue(key, "", "is not valid JSON");
    expectBadValue(key, "{'a': 'b'}", "is not valid JSON");
  }
}

TEST_CASE("checkpoint: vocab and labels must be arrays of strings") {
  for (const char *key : {"vocab", "labels"}) {
    expectBadValue(key, R"({"0":"<pad>"})", "must be a JSON array of strings, not an object");
    expectBadValue(key, R"("<pad>")", "must be a JSON array of strings, not a string");
    expectBadValue(key, R"(["<pad>","<unk>",3])", "element 2 is a number, not a string");
    expectBadValue(key, R"(["<pad>","<unk>",null])", "element 2 is a null, not a string");
  }
}

TEST_CASE("checkpoint: hyper_params and config must be objects of strings") {
  for (const char *key : {"hyper_params", "config"}) {
    expectBadValue(key, R"(["a","b"])", "must be a JSON object of strings, not an array");
    expectBadValue(key, "7", "must be a JSON object of strings, not a number");
    expectBadValue(key, R"({"dim":8})", "member \"dim\" is a number, not a string");
    expectBadValue(key, R"({"x":{"y":"z"}})", "member \"x\" is an object, not a string");
  }
}

TEST_CASE("checkpoint: vocab needs at least <pad>, <unk> first and no repeats") {
  expectBadValue("vocab", "[]", "must start with \"<pad>\", \"<unk>\"");
  expectBadValue("vocab", R"(["<pad>"])", "must start with \"<pad>\", \"<unk>\"");
  expectBadValue("vocab", R"(["<unk>","<pad>","a"])", "must start with \"<pad>\", \"<unk>\"");
  expectBadValue("vocab", R"(["the","<pad>","<unk>"])", "must start with \"<pad>\", \"<unk>\"");
  expectBadValue("vocab", R"(["<pad>","<unk>","a","b","a"])", "lists the token \"a\" twice");
}

TEST_CASE("checkpoint: labels must be non-empty and unique") {
  expectBadValue("labels", "[]", "is empty");
  expectBadValue("labels", R"(["pos","neg","pos"])", "lists the label \"pos\" twice");
}

TEST_CASE("checkpoint: epoch, batch and step must be non-negative decimal integers") {
  for (const char *key : {"epoch", "batch", "step"})
    for (const char *bad : {"-1", "", "1.5", "1e3", " 1", "1 ", "+1", "0x10", "one", "99999999999999999999"})
      expectBadValue(key, bad, "must be a non-negative decimal integer");
}

TEST_CASE("checkpoint: a truncated file is an error, never a crash") {
  CkptDir dir;
  std::string good = dir.file("good.safetensors");
  saveCheckpoint(good, sampleCheckpoint());
  std::string bytes;
  {
    std::ifstream in(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  REQUIRE(bytes.size() > 64);
  std::string cut = dir.file("cut.safetensors");
  for (size_t len : {size_t(0), size_t(3), size_t(8), size_t(9), size_t(40), bytes.size() / 2, bytes.size() - 4,
                     bytes.size() - 1}) {
    CAPTURE(len);
    std::ofstream(cut, std::ios::binary | std::ios::trunc) << bytes.substr(0, len);
    CHECK_THROWS_AS(loadCheckpoint(cut), Error);
  }

  // The safetensors reader's errors are located at the file too.
  std::ofstream(cut, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 1);
  try {
    loadCheckpoint(cut);
    FAIL("a truncated checkpoint loaded");
  } catch (const Error &e) {
    CHECK(e.loc().file == cut);
    CHECK(formatError(e).rfind(cut + ": error: ", 0) == 0);
    CHECK(e.message().find(cut) == std::string::npos); // not repeated in the message
  }
}

TEST_CASE("checkpoint: a missing file is an error naming it") {
  CkptDir dir;
  std::string p = dir.file("nope.safetensors");
  CHECK_THROWS_WITH_AS(loadCheckpoint(p), doctest::Contains(p.c_str()), Error);
}

TEST_CASE("checkpoint: NaN or infinity is never saved, and an existing file stays") {
  CkptDir dir;
  Checkpoint c = sampleCheckpoint();
  std::string p = dir.file("model.ckpt.safetensors");
  saveCheckpoint(p, c);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    Checkpoint diverged = c;
    diverged.step += 1;
    diverged.tensors["optimizer.fc.bias.v"].f32()[1] = bad;
    CHECK_THROWS_WITH_AS(saveCheckpoint(p, diverged),
                         doctest::Contains("refusing to save a checkpoint whose tensor 'optimizer.fc.bias.v' holds"),
                         Error);
    CHECK(loadCheckpoint(p).step == c.step);
  }
}

TEST_CASE("firstNonFinite finds the first NaN or infinity, past the first block") {
  Tensor t(ir::DType::F32, {3, 5000});
  CHECK_FALSE(firstNonFinite(t));
  t.f32()[12345] = std::numeric_limits<float>::infinity();
  t.f32()[14000] = std::numeric_limits<float>::quiet_NaN();
  CHECK(firstNonFinite(t) == 12345);
  t.f32()[12345] = std::numeric_limits<float>::max(); // finite, however large
  CHECK(firstNonFinite(t) == 14000);
  CHECK_FALSE(firstNonFinite(Tensor::fromI32({2}, {-1, INT32_MAX})));
}

TEST_CASE("config values are checked when read") {
  Config config = {{"max_len", "256"}, {"lr", "1e-3"}, {"bad", "12x"}, {"neg", "-3"}, {"inf", "inf"}};
  CHECK(configInteger(config, "max_len", "f") == 256);
  CHECK(configNumber(config, "lr", "f") == doctest::Approx(1e-3));
  CHECK_THROWS_WITH_AS(configInteger(config, "bad", "f.ckpt"),
                       "f.ckpt: the checkpoint's training config 'bad' must be a non-negative integer, got '12x'", Error);
  CHECK_THROWS_AS(configInteger(config, "neg", "f"), Error);
  CHECK_THROWS_AS(configNumber(config, "inf", "f"), Error);
  CHECK_THROWS_WITH_AS(configString(config, "epochs", "f.ckpt"), "f.ckpt: the checkpoint's training config has no 'epochs'",
                       Error);
}
