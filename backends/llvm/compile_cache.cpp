//===- backends/llvm/compile_cache.cpp - compiled plans kept on disk ------===//
#include "backends/llvm/compile_cache.h"

#include "backends/llvm/jit.h"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <llvm/Config/llvm-config.h>
#include <llvm/ADT/StringRef.h>
#include <llvm/Support/SHA256.h>
#include <sstream>
#include <unistd.h>

// A hash of kiln's backend sources (CMakeLists.txt, cmake/source_hash.cmake).
extern const char kiln_backend_source_hash[];

namespace kiln::backends::llvm_backend {

namespace {

namespace fs = std::filesystem;

constexpr const char *kMagic = "kiln compiled plan v1\n";
constexpr const char *kSuffix = ".kobj";

std::string sha256Hex(const std::string &data) {
  llvm::SHA256 h;
  h.update(llvm::StringRef(data));
  std::array<uint8_t, 32> digest = h.final();
  std::string hex;
  for (uint8_t byte : digest) hex += fmt::format("{:02x}", byte);
  return hex;
}

fs::path entryPath(const std::string &key) { return fs::path(cacheDirectory()) / ("llvm-" + key + kSuffix); }

void warnOnce(std::atomic<bool> &said, const std::string &what) {
  if (said.exchange(true)) return;
  fmt::print(stderr, "kiln: warning: {}\n", what);
}

} // namespace

std::string cacheDirectory() {
  const char *xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg == '/') return (fs::path(xdg) / "kiln").string();
  const char *home = std::getenv("HOME");
  if (home && *home) return (fs::path(home) / ".cache" / "kiln").string();
  return (fs::temp_directory_path() / "kiln-cache").string();
}

std::string cacheKey(const std::string &identity) {
  const HostTarget &t = hostTarget();
  return sha256Hex(fmt::format("kiln backend sources {}\nLLVM {}\ntarget {} {} {}\n{}", kiln_backend_source_hash,
                               LLVM_VERSION_STRING, t.triple, t.cpu, t.features, identity));
}

std::optional<std::string> loadCached(const std::string &key) {
  fs::path path = entryPath(key);
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string data = buffer.str();
  std::string magic = kMagic;
  // header, 64 hex digits and a newline, then the object
  size_t objectAt = magic.size() + 65;
  bool whole = data.size() > objectAt && data.compare(0, magic.size(), magic) == 0 && data[objectAt - 1] == '\n';
  if (whole) {
    std::string object = data.substr(objectAt);
    if (data.compare(magic.size(), 64, sha256Hex(object)) == 0) return object;
  }
  fmt::print(stderr, "kiln: warning: the compile cache entry {} is truncated or corrupt; compiling afresh\n",
             path.string());
  return std::nullopt;
}

void storeCached(const std::string &key, const std::string &object) {
  static std::atomic<bool> said{false};
  std::error_code ec;
  fs::path dir = cacheDirectory();
  fs::create_directories(dir, ec);
  if (ec) {
    warnOnce(said, fmt::format("cannot create the compile cache {}: {}; not caching", dir.string(), ec.message()));
    return;
  }
  fs::path final = entryPath(key);
  fs::path temp = dir / fmt::format(".llvm-{}.{}.tmp", key, static_cast<long>(getpid()));
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << kMagic << sha256Hex(object) << '\n';
    out.write(object.data(), static_cast<std::streamsize>(object.size()));
    out.close();
    if (!out) {
      fs::remove(temp, ec);
      warnOnce(said, fmt::format("cannot write to the compile cache {}; not caching", dir.string()));
      return;
    }
  }
  fs::rename(temp, final, ec);
  if (ec) {
    fs::remove(temp, ec);
    warnOnce(said, fmt::format("cannot write to the compile cache {}; not caching", dir.string()));
  }
}

CacheInfo cacheInfo() {
  CacheInfo info{cacheDirectory()};
  std::error_code ec;
  for (const fs::directory_entry &e : fs::directory_iterator(info.directory, ec)) {
    if (!e.is_regular_file(ec) || e.path().extension() != kSuffix) continue;
    ++info.entries;
    info.bytes += static_cast<int64_t>(e.file_size(ec));
  }
  return info;
}

int64_t clearCache() {
  std::error_code ec;
  int64_t removed = 0;
  std::vector<fs::path> doomed;
  for (const fs::directory_entry &e : fs::directory_iterator(cacheDirectory(), ec)) {
    std::string name = e.path().filename().string();
    bool entry = e.path().extension() == kSuffix && name.rfind("llvm-", 0) == 0;
    bool leftover = name.rfind(".llvm-", 0) == 0 && e.path().extension() == ".tmp";
    if (e.is_regular_file(ec) && (entry || leftover)) doomed.push_back(e.path());
  }
  for (const fs::path &p : doomed) removed += fs::remove(p, ec) ? 1 : 0;
  return removed;
}

} // namespace kiln::backends::llvm_backend
