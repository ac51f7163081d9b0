//===- backends/llvm/compile_cache.h - compiled plans kept on disk -*- C++ -*-===//
//
// The LLVM backend's object code per plan, in $XDG_CACHE_HOME/kiln (default
// ~/.cache/kiln), one file per key: `llvm-<sha256>.kobj`. The key hashes
// everything the code depends on: the optimised graph's IR text (locations
// included), the bound symbols, the plan's steps (which are generated and
// which call back into kiln), the host CPU's name and features, the LLVM
// version, and a hash of kiln's backend sources taken at build time (so a
// rebuilt kiln never runs a stale entry). An entry is a header line, the
// SHA-256 of the object, and the object; it is written to a temporary file
// and renamed, so a reader sees a whole entry or none. An entry that is
// truncated or corrupt is reported once and compiled afresh, never loaded.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kiln::backends::llvm_backend {

/// The cache directory (not created).
std::string cacheDirectory();

/// The key of a plan: a hex SHA-256 of `identity` and the build's and
/// host's facts.
std::string cacheKey(const std::string &identity);

/// The object stored under key; nullopt when there is none or it is not
/// whole (then a warning on standard error names the file).
std::optional<std::string> loadCached(const std::string &key);

/// Stores an object under key, atomically; a directory that cannot be
/// written is reported (once per process) and the cache skipped.
void storeCached(const std::string &key, const std::string &object);

struct CacheInfo {
  std::string directory;
  int64_t entries = 0, bytes = 0;
};
CacheInfo cacheInfo();
/// Removes every entry (and leftover temporary file); returns how many.
int64_t clearCache();

} // namespace kiln::backends::llvm_backend
