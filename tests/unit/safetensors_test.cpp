//===- tests/unit/safetensors_test.cpp - safetensors I/O and param init ---===//
//
// Round trips of every written dtype and of metadata, the exact bytes of a
// tiny file against the format spec, files from other tools (F64, I64, ...)
// crafted by hand, one test per thing a hostile file can get wrong, every
// truncation of a valid file, and atomic writes that leave the old file
// intact when they fail. Parameter initialisation (runtime/init.h) is tested
// here too, since it produces what checkpoints hold: reproducibility,
// distribution statistics, and the one-error-lists-all-mismatches rule.
//
//===----------------------------------------------------------------------===//
#include "runtime/init.h"
#include "runtime/safetensors.h"

#include "ir/diagnostic.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <random>
#include <sys/resource.h>
#include <unistd.h>

using namespace kiln;
using namespace kiln::runtime;
namespace fs = std::filesystem;

namespace {

/// A file image: 8-byte little-endian length, the header as given, the data.
std::string fileImage(const std::string &header, const std::string &data = {}) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

template <typename T> std::string bytesOf(const std::vector<T> &v) {
  return std::string(reinterpret_cast<const char *>(v.data()), v.size() * sizeof(T));
}

/// doctest::Contains for a std::string (it takes a doctest::String).
doctest::Contains has(const std::string &s) { return doctest::Contains(s.c_str()); }

bool sameTensor(const Tensor &a, const Tensor &b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.byteSize() == b.byteSize() &&
         // Zero-element tensors have no buffer, and memcmp(nullptr, ...) is UB.
         (a.byteSize() == 0 || std::memcmp(a.raw(), b.raw(), a.byteSize()) == 0);
}

std::string readFile(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kiln-st-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() { fs::remove_all(path); }
  bool hasTempFiles() const {
    for (const auto &e : fs::directory_iterator(path))
      if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
    return false;
  }
};

SafeTensors sample() {
  SafeTensors st;
  st.tensors["fc1.weight"] = Tensor::fromF32({2, 3}, {1.5f, -2.0f, 0.0f, -0.0f, 1e-30f, 3.25e30f});
  st.tensors["fc1.bias"] = Tensor::fromF32({3}, {INFINITY, -INFINITY, NAN});
  st.tensors["ids"] = Tensor::fromI32({2, 2}, {0, -1, INT32_MAX, INT32_MIN});
  st.tensors["mask"] = Tensor::fromBool({5}, {1, 0, 0, 1, 1});
  st.tensors["scalar"] = Tensor::fromF32({}, {42.0f});
  st.tensors["empty"] = Tensor::fromI32({0, 3}, {});
  return st;
}

void checkSame(const SafeTensors &a, const SafeTensors &b) {
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (const auto &[name, t] : a.tensors) {
    CAPTURE(name);
    REQUIRE(b.tensors.count(name));
    CHECK(sameTensor(t, b.tensors.at(name)));
  }
  CHECK(a.metadata == b.metadata);
}

} // namespace

TEST_CASE("safetensors: round trip of every written dtype and of metadata") {
  SafeTensors st = sample();
  st.metadata = {{"format", "pt"}, {"note", "quote \" backslash \\ newline \n \xE2\x82\xAC"}, {"", ""}};
  std::string bytes = serializeSafeTensors(st);
  checkSame(st, parseSafeTensors(bytes, "mem"));

  st.metadata.clear();
  checkSame(st, parseSafeTensors(serializeSafeTensors(st), "mem"));
  CHECK(serializeSafeTensors(st).find("__metadata__") == std::string::npos);

  SafeTensors reserved;
  reserved.tensors["__metadata__"] = Tensor::fromF32({}, {1.0f});
  CHECK_THROWS_WITH_AS(serializeSafeTensors(reserved), "cannot save a tensor named '__metadata__'", Error);

  SafeTensors none;
  CHECK(serializeSafeTensors(none) == fileImage("{}      "));
  checkSame(none, parseSafeTensors(serializeSafeTensors(none), "mem"));
}

// Found by tests/fuzz (fuzz_safetensors) and the sanitized unit run: a
// zero-element tensor has no buffer, and copying its 0 bytes passed a null
// pointer to memcpy (undefined behaviour that UBSan halts on). Every dtype
// path, direct and converted, must read such tensors.
TEST_CASE("safetensors: zero-element tensors of every dtype are read") {
  for (const char *dtype : {"F32", "I32", "F64", "I64", "I16", "I8", "U8", "BOOL"}) {
    CAPTURE(dtype);
    std::string header = std::string(R"({"e":{"dtype":")") + dtype + R"(","shape":[2,0],"data_offsets":[0,0]}})";
    SafeTensors st = parseSafeTensors(fileImage(header), "zero.safetensors");
    REQUIRE(st.tensors.count("e"));
    CHECK(st.tensors.at("e").numel() == 0);
    CHECK(st.tensors.at("e").shape() == std::vector<int64_t>{2, 0});
  }
}

TEST_CASE("safetensors: the bytes of a tiny file match the format spec") {
  SafeTensors st;
  st.tensors["a"] = Tensor::fromF32({2}, {1.0f, -2.0f});
  // The header is 54 bytes of JSON, padded with 2 spaces to 56 = 0x38; then
  // 1.0f = 0x3F800000 and -2.0f = 0xC0000000, little-endian.
  std::string expected = std::string("\x38\0\0\0\0\0\0\0", 8) +
                         R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})" + "  " +
                         std::string("\0\0\x80\x3F\0\0\0\xC0", 8);
  CHECK(serializeSafeTensors(st) == expected);

  st.metadata["format"] = "pt";
  std::string withMeta = serializeSafeTensors(st);
  std::string header = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  REQUIRE(header.size() == 85); // padded with 3 spaces to 88
  CHECK(withMeta == fileImage(header + "   ", std::string("\0\0\x80\x3F\0\0\0\xC0", 8)));
}

TEST_CASE("safetensors: data is laid out widest dtype first, header by name") {
  SafeTensors st;
  st.tensors["a"] = Tensor::fromBool({3}, {1, 0, 1});
  st.tensors["b"] = Tensor::fromF32({1}, {2.0f});
  std::string bytes = serializeSafeTensors(st);
  std::string header = R"({"a":{"dtype":"BOOL","shape":[3],"data_offsets":[4,7]},)"
                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  CHECK(bytes.substr(8, header.size()) == header);
  checkSame(st, parseSafeTensors(bytes, "mem"));
}

TEST_CASE("safetensors: files from other tools are converted on read") {
  std::string header = R"({"d":{"dtype":"F64","shape":[3],"data_offsets":[0,24]},)"
                       R"("l":{"dtype":"I64","shape":[2],"data_offsets":[24,40]},)"
                       R"("s":{"dtype":"I16","shape":[2],"data_offsets":[40,44]},)"
                       R"("c":{"dtype":"I8","shape":[2],"data_offsets":[44,46]},)"
                       R"("u":{"dtype":"U8","shape":[2],"data_offsets":[46,48]},)"
                       R"("i":{"dtype":"I32","shape":[1],"data_offsets":[48,52]},)"
                       R"("__metadata__":{"format":"np"}})";
  std::string data = bytesOf<double>({0.5, -1e30, 1.0 / 3.0}) + bytesOf<int64_t>({-2147483648LL, 2147483647LL}) +
                     bytesOf<int16_t>({-32768, 32767}) + bytesOf<int8_t>({-128, 127}) +
                     bytesOf<uint8_t>({0, 255}) + bytesOf<int32_t>({7});
  // A header padded with trailing spaces, as the reference writer does.
  SafeTensors st = parseSafeTensors(fileImage(header + "   ", data), "np.safetensors");
  CHECK(st.metadata.at("format") == "np");
  const Tensor &d = st.tensors.at("d");
  CHECK(d.typeStr() == "f32[3]");
  CHECK(d.f32()[0] == 0.5f);
  CHECK(d.f32()[1] == static_cast<float>(-1e30));
  CHECK(d.f32()[2] == static_cast<float>(1.0 / 3.0));
  CHECK(st.tensors.at("l").i32()[0] == INT32_MIN);
  CHECK(st.tensors.at("l").i32()[1] == INT32_MAX);
  CHECK(st.tensors.at("s").typeStr() == "i32[2]");
  CHECK(st.tensors.at("s").i32()[0] == -32768);
  CHECK(st.tensors.at("c").i32()[0] == -128);
  CHECK(st.tensors.at("c").i32()[1] == 127);
  CHECK(st.tensors.at("u").i32()[1] == 255);
  CHECK(st.tensors.at("i").i32()[0] == 7);
}

TEST_CASE("safetensors: every hostile header is a clear error naming file and tensor") {
  auto bad = [](const std::string &bytes, const char *msg) {
    CHECK_THROWS_WITH_AS(parseSafeTensors(bytes, "evil.safetensors"), doctest::Contains(msg), Error);
    // The file is the error's location, so the driver prints `file: error: ...`.
    try {
      parseSafeTensors(bytes, "evil.safetensors");
    } catch (const Error &e) {
      CHECK(e.loc().file == "evil.safetensors");
      CHECK(formatError(e).rfind("evil.safetensors: error: ", 0) == 0);
    }
  };
  // One tensor entry `a` with the given fields, and the data buffer.
  auto one = [](const std::string &fields, const std::string &data) {
    return fileImage("{\"a\":{" + fields + "}}", data);
  };
  std::string f8(8, '\0');

  SUBCASE("length prefix") {
    bad("", "file is too short for a safetensors header (0 bytes)");
    bad("\x02\0\0\0", "file is too short");
    std::string n100 = std::string("\x64\0\0\0\0\0\0\0", 8) + "{}";
    bad(n100, "header length 100 runs past the end of the file (10 bytes)");
    bad(std::string("\0\0\0\0\0\x01\0\0", 8) + "{}", "exceeds the limit");
    bad(std::string(8, '\xFF') + "{}", "header length 18446744073709551615 exceeds the limit");
  }
  SUBCASE("other files") {
    // Text read as a length is far too long, and no JSON object follows.
    bad("spam\tfree money now\nham\tsee you at lunch\n", "not a safetensors file");
    bad("garbage!", "not a safetensors file");
    bad(std::string("\x64\0\0\0\0\0\0\0", 8) + "[]", "not a safetensors file");
  }
  SUBCASE("header JSON") {
    bad(fileImage("{\"a\":"), "bad header: invalid JSON at byte 5");
    bad(fileImage(""), "bad header: invalid JSON at byte 0");
    bad(fileImage("[1,2]"), "header is a JSON array, not an object");
    bad(fileImage("\"x\""), "header is a JSON string, not an object");
    bad(fileImage(R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"a":{}})", "1234"), "duplicate key");
    bad(fileImage(R"({"a":3})"), "tensor 'a': entry must be an object");
    bad(one(R"("shape":[1],"data_offsets":[0,4])", "1234"), "tensor 'a': missing or non-string \"dtype\"");
    bad(one(R"("dtype":1,"shape":[1],"data_offsets":[0,4])", "1234"), "non-string \"dtype\"");
    bad(one(R"("dtype":"F32","data_offsets":[0,4])", "1234"), "missing or non-array \"shape\"");
    bad(one(R"("dtype":"F32","shape":1,"data_offsets":[0,4])", "1234"), "missing or non-array \"shape\"");
    bad(one(R"("dtype":"F32","shape":[1])", "1234"), "missing or non-array \"data_offsets\"");
  }
  SUBCASE("dtype") {
    bad(one(R"("dtype":"F16","shape":[2],"data_offsets":[0,4])", "1234"), "tensor 'a': unsupported dtype 'F16'");
    bad(one(R"("dtype":"f32","shape":[1],"data_offsets":[0,4])", "1234"), "unsupported dtype 'f32'");
    bad(one(R"("dtype":"","shape":[1],"data_offsets":[0,4])", "1234"), "unsupported dtype ''");
  }
  SUBCASE("shape") {
    bad(one(R"("dtype":"F32","shape":[-1],"data_offsets":[0,4])", "1234"),
        "tensor 'a': shape dim 0 is not a non-negative integer");
    bad(one(R"("dtype":"F32","shape":[1,2.5],"data_offsets":[0,4])", "1234"), "shape dim 1 is not a non-negative");
    bad(one(R"("dtype":"F32","shape":[1.0],"data_offsets":[0,4])", "1234"), "shape dim 0 is not");
    bad(one(R"("dtype":"F32","shape":["1"],"data_offsets":[0,4])", "1234"), "shape dim 0 is not");
    bad(one(R"("dtype":"F32","shape":[100000000000000000000],"data_offsets":[0,4])", "1234"), "shape dim 0 is not");
    bad(one(R"("dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4])", "1234"),
        "tensor 'a': element count overflows");
    bad(one(R"("dtype":"U8","shape":[3037000500,3037000500],"data_offsets":[0,4])", "1234"),
        "element count overflows"); // fits in u64 but not in i64
    bad(one(R"("dtype":"F64","shape":[4294967296,4294967296,0],"data_offsets":[0,0])", ""), "element count overflows");
    bad(one(R"("dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4])", "1234"),
        "tensor 'a': byte size overflows");
  }
  SUBCASE("data_offsets") {
    const char *shape = R"("dtype":"F32","shape":[1],)";
    auto offs = [&](const std::string &o) { return one(shape + std::string("\"data_offsets\":") + o, f8); };
    bad(offs("[0]"), "tensor 'a': data_offsets must be two non-negative integers");
    bad(offs("[0,4,8]"), "data_offsets must be two");
    bad(offs("[\"0\",4]"), "data_offsets must be two");
    bad(offs("[0,4.0]"), "data_offsets must be two");
    bad(offs("[-4,0]"), "data_offsets must be two");
    bad(offs("[0,null]"), "data_offsets must be two");
    bad(offs("[0,18446744073709551616]"), "data_offsets must be two");
    bad(offs("[8,4]"), "tensor 'a': data_offsets end 4 is before begin 8");
    bad(offs("[8,12]"), "tensor 'a': data_offsets end 12 is beyond the data buffer (8 bytes)");
    bad(offs("[0,9223372036854775807]"), "is beyond the data buffer");
    bad(offs("[0,8]"), "tensor 'a': data_offsets cover 8 bytes but F32[1 elements] needs 4");
    bad(offs("[2,4]"), "cover 2 bytes");
  }
  SUBCASE("overlaps") {
    bad(fileImage(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                  std::string(12, '\0')),
        "tensors 'a' and 'b' overlap in the data buffer");
    bad(fileImage(R"({"x":{"dtype":"I32","shape":[1],"data_offsets":[4,8]},)"
                  R"("y":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}})",
                  f8),
        "overlap");
    // A big tensor that contains a later one entirely.
    bad(fileImage(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]},)"
                  R"("c":{"dtype":"U8","shape":[1],"data_offsets":[5,6]}})",
                  f8),
        "overlap");
  }
  SUBCASE("metadata") {
    bad(fileImage(R"({"__metadata__":{"k":1}})"), "__metadata__ value of 'k' is a number, not a string");
    bad(fileImage(R"({"__metadata__":{"a":"ok","k":null}})"), "__metadata__ value of 'k' is a null");
    bad(fileImage(R"({"__metadata__":{"k":{"x":"y"}}})"), "is a object, not a string");
    bad(fileImage(R"({"__metadata__":["k"]})"), "__metadata__ must be an object of strings");
  }
  SUBCASE("values that do not fit kiln's dtypes") {
    bad(one(R"("dtype":"I64","shape":[2],"data_offsets":[0,16])", bytesOf<int64_t>({1, 2147483648LL})),
        "tensor 'a': element 1 = 2147483648 is out of i32 range");
    bad(one(R"("dtype":"I64","shape":[1],"data_offsets":[0,8])", bytesOf<int64_t>({INT64_MIN})), "out of i32 range");
    bad(one(R"("dtype":"F64","shape":[1],"data_offsets":[0,8])", bytesOf<double>({1e300})),
        "tensor 'a': element 0 is out of f32 range");
    bad(one(R"("dtype":"BOOL","shape":[2],"data_offsets":[0,2])", std::string("\x01\x02", 2)),
        "element 1 is 2, not a bool 0 or 1");
  }
}

TEST_CASE("safetensors: tolerated irregularities") {
  // Holes between tensors, zero-size tensors anywhere, and unknown fields in
  // an entry are outside the spec's letter but harmless.
  SafeTensors st = parseSafeTensors(fileImage(R"({"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]},)"
                                              R"("e":{"dtype":"F32","shape":[0],"data_offsets":[2,2]},)"
                                              R"("b":{"dtype":"I32","shape":[1],"data_offsets":[8,12],"x":1}})",
                                              bytesOf<int32_t>({5, 0, 6})),
                                    "holes");
  CHECK(st.tensors.at("a").i32()[0] == 5);
  CHECK(st.tensors.at("b").i32()[0] == 6);
  CHECK(st.tensors.at("e").numel() == 0);
  // F64 infinities and NaN are representable in f32 and carry over.
  std::string header = R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})";
  SafeTensors inf = parseSafeTensors(fileImage(header, bytesOf<double>({-INFINITY, NAN})), "inf");
  CHECK(std::isinf(inf.tensors.at("a").f32()[0]));
  CHECK(std::isnan(inf.tensors.at("a").f32()[1]));
}

TEST_CASE("safetensors: every truncation and random corruption of a valid file is an error, not a crash") {
  std::string bytes = serializeSafeTensors(sample());
  for (size_t len = 0; len < bytes.size(); ++len) {
    CAPTURE(len);
    CHECK_THROWS_AS(parseSafeTensors(bytes.substr(0, len), "cut"), Error);
  }
  // Flipped bytes must either still parse or be reported; the sanitizers
  // (or a crash) would catch anything else.
  std::mt19937 rng(1234);
  int errors = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string evil = bytes;
    int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) evil[rng() % evil.size()] = static_cast<char>(rng());
    try {
      parseSafeTensors(evil, "fuzz");
    } catch (const Error &) {
      ++errors;
    }
  }
  CHECK(errors > 0);
}

TEST_CASE("safetensors: write and read a file") {
  TempDir dir;
  fs::path p = dir.path / "model.safetensors";
  SafeTensors st = sample();
  st.metadata["epoch"] = "3";
  writeSafeTensors(p.string(), st);
  checkSame(st, readSafeTensors(p.string()));
  CHECK(readFile(p) == serializeSafeTensors(st));
  CHECK_FALSE(dir.hasTempFiles());

  // Overwriting replaces the whole file.
  SafeTensors small;
  small.tensors["x"] = Tensor::fromI32({1}, {9});
  writeSafeTensors(p.string(), small);
  checkSame(small, readSafeTensors(p.string()));

  CHECK_THROWS_WITH_AS(readSafeTensors((dir.path / "nope.safetensors").string()),
                       has("cannot open '" + (dir.path / "nope.safetensors").string() + "': No such file or directory"),
                       Error);
  CHECK_THROWS_WITH_AS(readSafeTensors(dir.path.string()), doctest::Contains("is a directory"), Error);
  std::ofstream(dir.path / "junk.safetensors") << "junk";
  std::string junk = (dir.path / "junk.safetensors").string();
  try {
    readSafeTensors(junk);
    FAIL("a 4-byte file must be rejected");
  } catch (const Error &e) {
    CHECK(formatError(e) == junk + ": error: file is too short for a safetensors header (4 bytes)\n");
  }
}

TEST_CASE("safetensors: a failed write leaves the old file intact and no temp file") {
  TempDir dir;
  fs::path p = dir.path / "ckpt.safetensors";
  SafeTensors old;
  old.tensors["w"] = Tensor::fromF32({2}, {1.0f, 2.0f});
  writeSafeTensors(p.string(), old);
  std::string oldBytes = readFile(p);

  SafeTensors big;
  big.tensors["w"] = Tensor(ir::DType::F32, {64, 1024});

  SUBCASE("disk full (file size limit), which root cannot bypass") {
    // RLIMIT_FSIZE makes write() fail with EFBIG, standing in for ENOSPC.
    struct rlimit saved {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    auto oldHandler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = saved;
    lim.rlim_cur = 4096;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
    bool threw = false;
    std::string msg;
    try {
      writeSafeTensors(p.string(), big);
    } catch (const Error &e) {
      threw = true;
      msg = e.message();
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, oldHandler);
    CHECK(threw);
    CHECK(msg.find("cannot write '" + p.string() + ".tmp.") == 0);
    CHECK(msg.find("File too large") != std::string::npos);
  }
  SUBCASE("parent directory does not exist") {
    std::string q = (dir.path / "missing" / "ckpt.safetensors").string();
    CHECK_THROWS_WITH_AS(writeSafeTensors(q, big), has(q + ".tmp."), Error);
    CHECK_THROWS_WITH_AS(writeSafeTensors(q, big), doctest::Contains("No such file or directory"), Error);
    CHECK_FALSE(fs::exists(dir.path / "missing"));
  }
  SUBCASE("destination is a directory") {
    fs::path d = dir.path / "adir";
    fs::create_directory(d);
    fs::path inside = d / "keep";
    std::ofstream(inside) << "keep";
    CHECK_THROWS_WITH_AS(writeSafeTensors(d.string(), big), has("cannot replace '" + d.string() + "'"),
                         Error);
    CHECK(fs::is_directory(d));
    CHECK(readFile(inside) == "keep");
  }
  CHECK(readFile(p) == oldBytes);
  CHECK_FALSE(dir.hasTempFiles());
  checkSame(old, readSafeTensors(p.string()));
}

//===----------------------------------------------------------------------===//
// Parameter initialisation
//===----------------------------------------------------------------------===//

namespace {

ir::TensorType f32(std::vector<int64_t> dims) {
  ir::Shape s;
  for (int64_t d : dims) s.push_back(ir::Dim::constant(d));
  return {ir::DType::F32, s};
}
ir::Attrs normalInit(double stddev) { return {{"init", std::string("normal")}, {"std", stddev}}; }
ir::Attrs uniformInit(double bound) { return {{"init", std::string("uniform")}, {"bound", bound}}; }

/// A graph with the parameters of a small classifier.
ir::Graph classifier() {
  ir::Graph g;
  g.addParam("embedding.weight", f32({1000, 1000}), normalInit(1.0));
  g.addParam("fc1.weight", f32({256, 128}), uniformInit(1.0 / std::sqrt(128.0)));
  g.addParam("fc1.bias", f32({256}), uniformInit(1.0 / std::sqrt(128.0)));
  g.addParam("step", {ir::DType::I32, {}});
  g.addParam("zero", f32({3}));
  return g;
}

void meanStd(std::span<const float> v, double &mean, double &stddev) {
  double s = 0, s2 = 0;
  for (float x : v) s += x, s2 += static_cast<double>(x) * x;
  mean = s / v.size();
  stddev = std::sqrt(s2 / v.size() - mean * mean);
}

} // namespace

TEST_CASE("init: the same seed gives the same values, another seed others") {
  ir::Graph g = classifier();
  auto a = materializeParams(g, {}, 42);
  auto b = materializeParams(g, {}, 42);
  auto c = materializeParams(g, {}, 43);
  REQUIRE(a.size() == 5);
  for (const auto &[name, t] : a) {
    CAPTURE(name);
    CHECK(sameTensor(t, b.at(name)));
  }
  CHECK_FALSE(sameTensor(a.at("embedding.weight"), c.at("embedding.weight")));
  CHECK_FALSE(sameTensor(a.at("fc1.weight"), c.at("fc1.weight")));
  // Parameters with the same init and seed still differ by name.
  CHECK(a.at("fc1.weight").f32()[0] != a.at("fc1.bias").f32()[0]);
  // Pins the generator: a change of algorithm changes every checkpoint.
  // Uniform values involve no libm call beyond sqrt and are exact; normals
  // go through log/cos, which libraries may round differently in the last
  // bit of a double, so they are compared with a tolerance.
  CHECK(a.at("fc1.bias").f32()[0] == 0.0476765633f);
  CHECK(a.at("fc1.bias").f32()[1] == 0.0438558534f);
  CHECK(a.at("embedding.weight").f32()[0] == doctest::Approx(1.26189566).epsilon(1e-6));
}

TEST_CASE("init: a parameter's values do not depend on the other parameters") {
  ir::Graph g = classifier();
  ir::Graph h;
  h.addParam("extra", f32({7}), normalInit(1.0));
  h.addParam("fc1.bias", f32({256}), uniformInit(1.0 / std::sqrt(128.0)));
  auto a = materializeParams(g, {}, 7);
  auto b = materializeParams(h, {}, 7);
  CHECK(sameTensor(a.at("fc1.bias"), b.at("fc1.bias")));
}

TEST_CASE("init: distributions") {
  auto p = materializeParams(classifier(), {}, 1);
  double mean = 0, stddev = 0;
  // 10^6 samples: the standard error of the mean is 0.001 and of the std
  // about 0.0007, so 0.005 is a 5-sigma tolerance.
  meanStd(p.at("embedding.weight").f32(), mean, stddev);
  CHECK(std::fabs(mean) < 0.005);
  CHECK(std::fabs(stddev - 1.0) < 0.005);
  float lo = 0, hi = 0;
  for (float x : p.at("embedding.weight").f32()) lo = std::min(lo, x), hi = std::max(hi, x);
  CHECK(lo < -4.0f); // the tails are there
  CHECK(hi > 4.0f);

  const double bound = 1.0 / std::sqrt(128.0);
  for (const char *name : {"fc1.weight", "fc1.bias"}) {
    CAPTURE(name);
    std::span<const float> v = p.at(name).f32();
    lo = 0, hi = 0;
    for (float x : v) {
      REQUIRE(std::fabs(x) <= static_cast<float>(bound));
      lo = std::min(lo, x), hi = std::max(hi, x);
    }
    CHECK(lo < -0.95 * bound);
    CHECK(hi > 0.95 * bound);
  }
  // U(-b, b) has std b/sqrt(3); 32768 samples give a standard error of the
  // mean of about 0.0005, checked at 5 sigma.
  meanStd(p.at("fc1.weight").f32(), mean, stddev);
  CHECK(std::fabs(mean) < 0.0025);
  CHECK(stddev == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.02));

  CHECK(p.at("step").typeStr() == "i32[]");
  CHECK(p.at("step").i32()[0] == 0);
  for (float x : p.at("zero").f32()) CHECK(x == 0.0f);

  ir::Graph g;
  g.addParam("w", f32({100000}), normalInit(0.02));
  g.addParam("odd", f32({3}), normalInit(1.0)); // Box-Muller makes pairs
  auto q = materializeParams(g, {}, 5);
  meanStd(q.at("w").f32(), mean, stddev);
  CHECK(stddev == doctest::Approx(0.02).epsilon(0.02));
  CHECK(q.at("odd").f32()[2] != 0.0f);
}

TEST_CASE("init: given tensors are used and checked, every mismatch in one error") {
  ir::Graph g = classifier();
  std::map<std::string, Tensor> given;
  given["fc1.bias"] = Tensor::fromF32({256}, std::vector<float>(256, 0.5f));
  auto p = materializeParams(g, given, 3, /*strict=*/true);
  CHECK(sameTensor(p.at("fc1.bias"), given.at("fc1.bias")));
  CHECK(p.size() == 5);

  given["fc1.weight"] = Tensor(ir::DType::F32, {128, 256});       // transposed
  given["step"] = Tensor(ir::DType::F32, {});                     // wrong dtype
  given["zero"] = Tensor(ir::DType::I32, {4});                    // both
  given["fc1.weigth"] = Tensor(ir::DType::F32, {256, 128});       // unknown, near a real name
  given["optimizer.state"] = Tensor(ir::DType::F32, {1});         // unknown
  std::string msg;
  try {
    materializeParams(g, given, 3, /*strict=*/true);
  } catch (const Error &e) {
    msg = e.message();
  }
  CHECK(msg == "5 problems with the parameters of graph 'forward':\n"
               "  fc1.weight: expected f32[256,128], got f32[128,256]\n"
               "  step: expected i32[], got f32[]\n"
               "  zero: expected f32[3], got i32[4]\n"
               "  fc1.weigth: not a parameter of graph 'forward' (did you mean 'fc1.weight'?)\n"
               "  optimizer.state: not a parameter of graph 'forward'");

  // Without strict, unknown names are ignored but mismatches are not.
  CHECK_THROWS_WITH_AS(materializeParams(g, given, 3), doctest::Contains("3 problems"), Error);
  given.erase("fc1.weight"), given.erase("step"), given.erase("zero");
  CHECK(materializeParams(g, given, 3).size() == 5);
}

TEST_CASE("init: bad init attributes are reported") {
  ir::Graph g;
  g.addParam("a", f32({2}), {{"init", std::string("xavier")}});
  g.addParam("b", {ir::DType::I32, {ir::Dim::constant(2)}}, normalInit(1.0));
  g.addParam("c", f32({2}), {{"init", std::string("normal")}, {"std", std::string("big")}});
  g.addParam("d", {ir::DType::F32, {ir::Dim::named("B")}});
  std::string msg;
  try {
    materializeParams(g, {}, 0);
  } catch (const Error &e) {
    msg = e.message();
  }
  CHECK(msg.find("4 problems") == 0);
  CHECK(msg.find("\n  a: unknown init \"xavier\"") != std::string::npos);
  CHECK(msg.find("\n  b: init \"normal\" needs f32, got i32[2]") != std::string::npos);
  CHECK(msg.find("\n  c: attribute 'std' must be a number") != std::string::npos);
  CHECK(msg.find("\n  d: parameter type f32[B] has a symbolic dim") != std::string::npos);
}
