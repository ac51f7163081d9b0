//===- tools/cli.h - command-line parsing shared by the kiln commands -*- C++ -*-===//
//
// Args parses `--name=value`, `--name value`, flags and positional
// arguments against the option names a command declares, so every command
// rejects unknown options (with a suggestion) in the same way. UsageError is
// the exception for bad usage: the driver prints it with a pointer to --help
// and exits 2.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/diagnostic.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fmt/format.h>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace kiln::cli {

/// A usage error: printed with a pointer to --help, exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Command-line options: `--name=value`, `--name value` and flags.
class Args {
public:
  Args(int argc, char **argv, int first, const std::vector<std::string> &valued, const std::vector<std::string> &flags) {
    for (int i = first; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "-h" || a == "--help") {
        help = true;
        continue;
      }
      if (a.size() < 2 || a[0] != '-') {
        positional.push_back(a);
        continue;
      }
      std::string name = a, value;
      bool hasValue = false;
      if (auto eq = a.find('='); eq != std::string::npos && a.rfind("--", 0) == 0) {
        name = a.substr(0, eq);
        value = a.substr(eq + 1);
        hasValue = true;
      }
      if (std::find(flags.begin(), flags.end(), name) != flags.end()) {
        if (hasValue) throw UsageError(fmt::format("option {} takes no value", name));
        values[name].push_back("1");
        continue;
      }
      if (std::find(valued.begin(), valued.end(), name) == valued.end()) {
        std::vector<std::string> all(valued);
        all.insert(all.end(), flags.begin(), flags.end());
        std::string hint = nearestName(name, all);
        throw UsageError(fmt::format("unknown option '{}'{}", name, hint.empty() ? "" : "; did you mean '" + hint + "'?"));
      }
      if (!hasValue) {
        if (i + 1 >= argc) throw UsageError(fmt::format("option {} needs a value", name));
        value = argv[++i];
      }
      values[name].push_back(value);
    }
  }

  std::optional<std::string> get(const std::string &name) const {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    if (it->second.size() > 1) throw UsageError(fmt::format("option {} is given more than once", name));
    return it->second.front();
  }
  std::vector<std::string> all(const std::string &name) const {
    auto it = values.find(name);
    return it == values.end() ? std::vector<std::string>{} : it->second;
  }
  bool flag(const std::string &name) const { return values.count(name) != 0; }
  int64_t integer(const std::string &name, int64_t dflt) const {
    auto v = get(name);
    if (!v) return dflt;
    char *end = nullptr;
    errno = 0;
    long long n = std::strtoll(v->c_str(), &end, 10);
    if (v->empty() || *end != '\0' || errno == ERANGE || n < 0)
      throw UsageError(fmt::format("option {} needs a non-negative integer, got '{}'", name, *v));
    return n;
  }

  bool help = false;
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> values;
};

inline std::map<std::string, std::string> paramOverrides(const Args &args) {
  std::map<std::string, std::string> out;
  for (const std::string &p : args.all("--param")) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) throw UsageError(fmt::format("--param needs NAME=VALUE, got '{}'", p));
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

/// A non-negative floating-point option.
inline double number(const Args &args, const std::string &name, double dflt) {
  auto v = args.get(name);
  if (!v) return dflt;
  char *end = nullptr;
  double d = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || !(d >= 0) || d > 1e300)
    throw UsageError(fmt::format("option {} needs a non-negative number, got '{}'", name, *v));
  return d;
}

} // namespace kiln::cli
