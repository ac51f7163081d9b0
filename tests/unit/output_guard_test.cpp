//===- tests/unit/output_guard_test.cpp - outputs never destroy a file ----===//
//
// runtime/output_guard.h: an output is never an input, replaces only a file
// of its own kind (or an empty one) unless forced, and an unwritable place
// is found before any work.
//
//===----------------------------------------------------------------------===//
#include "runtime/checkpoint.h"
#include "runtime/output_guard.h"

#include "ir/diagnostic.h"

#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace kiln;
using namespace kiln::runtime;
namespace fs = std::filesystem;

namespace {

struct Dir {
  fs::path path;
  Dir() {
    std::string tmpl = (fs::temp_directory_path() / "kiln-out-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~Dir() {
    fs::permissions(path, fs::perms::owner_all);
    fs::remove_all(path);
  }
  std::string write(const std::string &name, const std::string &text) const {
    std::string p = (path / name).string();
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  std::string file(const std::string &name) const { return (path / name).string(); }
};

Checkpoint tinyCheckpoint() {
  Checkpoint c;
  c.tensors["w"] = Tensor::fromF32({2}, {1, 2});
  c.vocab = {"<pad>", "<unk>"};
  c.labels = {"a", "b"};
  return c;
}

} // namespace

TEST_CASE("output guard: a new file in a writable directory is fine") {
  Dir d;
  CHECK_NOTHROW(checkOutput("--out", d.file("new.ckpt"), OutputKind::Checkpoint, {}, false));
  CHECK_FALSE(fs::exists(d.file("new.ckpt")));
  // The probe file is gone again.
  CHECK(std::distance(fs::directory_iterator(d.path), fs::directory_iterator()) == 0);
}

TEST_CASE("output guard: an input is never overwritten, even with --force or through a link") {
  Dir d;
  std::string data = d.write("d.tsv", "spam\tfree money\n");
  fs::create_symlink(data, d.file("link.tsv"));
  fs::create_hard_link(data, d.file("hard.tsv"));
  for (const std::string &out : {data, d.file("link.tsv"), d.file("hard.tsv"), d.file("./d.tsv")})
    for (bool force : {false, true}) {
      CAPTURE(out);
      CHECK_THROWS_WITH_AS(checkOutput("--out", out, OutputKind::Checkpoint, {{"--data", data}}, force),
                           doctest::Contains("is the file given as --data of this command"), Error);
    }
}

TEST_CASE("output guard: an existing file of another kind needs --force; its own kind does not") {
  Dir d;
  std::string ckpt = d.file("old.ckpt");
  saveCheckpoint(ckpt, tinyCheckpoint());
  std::string data = d.write("d.tsv", "spam\tfree money\nham\tlunch\n");
  std::string model = d.write("m.kiln", "model M {\n  fn forward(x: f32[B, 2]) { return x }\n}\n");
  std::string ir = d.write("m.ir", "graph @forward(%x: f32[B,2]) {\n  output y = %x\n}\n");
  std::string log = d.write("loss.log", "1 0.693\n2 0.5\n");
  std::string empty = d.write("empty", "");

  CHECK_NOTHROW(checkOutput("--out", ckpt, OutputKind::Checkpoint, {}, false));
  CHECK_NOTHROW(checkOutput("--out", empty, OutputKind::Checkpoint, {}, false));
  CHECK_NOTHROW(checkOutput("-o", ir, OutputKind::CompilerDump, {}, false));
  CHECK_NOTHROW(checkOutput("--loss-log", log, OutputKind::LossLog, {}, false));
  CHECK_NOTHROW(checkOutput("--outputs", ckpt, OutputKind::SafeTensors, {}, false));

  CHECK_THROWS_WITH_AS(checkOutput("--out", data, OutputKind::Checkpoint, {}, false),
                       doctest::Contains("exists and holds tab-separated text (data?), not a kiln checkpoint; pass --force"),
                       Error);
  CHECK_THROWS_WITH_AS(checkOutput("--out", model, OutputKind::Checkpoint, {}, false),
                       doctest::Contains("holds a kiln model, not a kiln checkpoint"), Error);
  CHECK_THROWS_WITH_AS(checkOutput("-o", model, OutputKind::CompilerDump, {}, false),
                       doctest::Contains("holds a kiln model, not kiln compiler output"), Error);
  CHECK_THROWS_WITH_AS(checkOutput("--loss-log", data, OutputKind::LossLog, {}, false),
                       doctest::Contains("not a loss log"), Error);
  CHECK_THROWS_WITH_AS(checkOutput("--out", log, OutputKind::Checkpoint, {}, false),
                       doctest::Contains("holds a loss log"), Error);
  CHECK_NOTHROW(checkOutput("--out", data, OutputKind::Checkpoint, {}, true));
  CHECK_THROWS_WITH_AS(checkOutput("--out", d.path.string(), OutputKind::Checkpoint, {}, true),
                       doctest::Contains("is a directory"), Error);
}

TEST_CASE("output guard: an unwritable directory is found before any work") {
  if (::geteuid() == 0) {
    // root writes anywhere; a missing directory still fails.
    Dir d;
    CHECK_THROWS_WITH_AS(checkOutput("--out", d.file("no/such/dir/m.ckpt"), OutputKind::Checkpoint, {}, false),
                         doctest::Contains("cannot write --out"), Error);
    return;
  }
  Dir d;
  fs::permissions(d.path, fs::perms::owner_read | fs::perms::owner_exec);
  CHECK_THROWS_WITH_AS(checkOutput("--out", d.file("m.ckpt"), OutputKind::Checkpoint, {}, false),
                       doctest::Contains("cannot write --out"), Error);
}
