//===- ir/diagnostic.cpp - source locations and user-facing errors -------===//
//
// Formatting of errors with a quoted source line; see diagnostic.h.
//
//===----------------------------------------------------------------------===//
#include "ir/diagnostic.h"

#include <algorithm>
#include <map>
#include <mutex>

namespace kiln {

std::string SourceLoc::str() const {
  if (!known()) return file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(col);
}

namespace {
std::mutex sourcesMutex;
std::map<std::string, std::string> &sources() {
  static std::map<std::string, std::string> s;
  return s;
}
} // namespace

void registerSource(const std::string &file, const std::string &text) {
  std::lock_guard<std::mutex> lock(sourcesMutex);
  sources()[file] = text;
}

std::string formatError(const Error &e) {
  std::string out;
  if (!e.loc().file.empty()) out += e.loc().str() + ": ";
  out += "error: " + e.message() + "\n";
  if (!e.loc().known()) return out;
  std::lock_guard<std::mutex> lock(sourcesMutex);
  auto it = sources().find(e.loc().file);
  if (it == sources().end()) return out;
  const std::string &text = it->second;
  size_t start = 0;
  for (int line = 1; line < e.loc().line && start != std::string::npos; ++line) {
    start = text.find('\n', start);
    if (start != std::string::npos) ++start;
  }
  if (start == std::string::npos || start > text.size()) return out;
  size_t end = text.find('\n', start);
  std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
  // Quote only printable text so that garbage input cannot garble the terminal.
  std::string shown, caret;
  for (size_t i = 0; i < line.size() && shown.size() < 200; ++i) {
    unsigned char c = static_cast<unsigned char>(line[i]);
    char printable = (c == '\t' || (c >= 0x20 && c < 0x7f) || c >= 0x80) ? char(c) : '?';
    if (c == '\r') continue;
    shown += printable;
    if (static_cast<int>(i) + 1 < e.loc().col) caret += (c == '\t' ? '\t' : ' ');
  }
  out += shown + "\n" + caret + "^\n";
  return out;
}

size_t editDistance(const std::string &a, const std::string &b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string nearestName(const std::string &name, const std::vector<std::string> &candidates) {
  std::string best;
  size_t bestDist = std::max<size_t>(2, name.size() / 3) + 1;
  for (const auto &c : candidates) {
    size_t d = editDistance(name, c);
    if (d < bestDist) {
      bestDist = d;
      best = c;
    }
  }
  return best;
}

} // namespace kiln
