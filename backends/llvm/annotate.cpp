//===- backends/llvm/annotate.cpp - assembly beside the DSL lines ---------===//
#include "backends/llvm/annotate.h"

#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

namespace kiln::backends::llvm_backend {

namespace {

/// The quoted strings of a directive's operands, in order.
std::vector<std::string> quotedStrings(const std::string &line) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = line.find('"', pos)) != std::string::npos) {
    size_t end = line.find('"', pos + 1);
    if (end == std::string::npos) break;
    out.push_back(line.substr(pos + 1, end - pos - 1));
    pos = end + 1;
  }
  return out;
}

/// The lines of source files, read once each.
class Sources {
public:
  const std::string &line(const std::string &path, int number) {
    auto it = files_.find(path);
    if (it == files_.end()) {
      std::vector<std::string> lines;
      std::ifstream in(path);
      for (std::string l; std::getline(in, l);) lines.push_back(l);
      it = files_.emplace(path, std::move(lines)).first;
    }
    static const std::string none;
    return number >= 1 && static_cast<size_t>(number) <= it->second.size() ? it->second[static_cast<size_t>(number) - 1]
                                                                           : none;
  }

private:
  std::map<std::string, std::vector<std::string>> files_;
};

std::string trim(const std::string &s) {
  size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

} // namespace

std::string annotateAssembly(const std::string &assembly) {
  struct File {
    std::string shown, path; // as the DSL names it; where to read it
  };
  std::map<int, File> files;
  Sources sources;
  std::string out;
  int file = -1, line = -1;        // of the instructions that follow
  int shownFile = -2, shownLine = -2; // the header printed last
  std::istringstream in(assembly);
  for (std::string text; std::getline(in, text);) {
    std::string t = trim(text);
    if (t.empty()) continue;
    if (t.rfind(".file", 0) == 0) {
      std::istringstream words(t.substr(5));
      int number = -1;
      words >> number;
      std::vector<std::string> q = quotedStrings(t);
      if (q.empty() || number < 0) continue;
      std::string name = q.back(), dir = q.size() > 1 ? q[q.size() - 2] : "";
      std::filesystem::path p(name);
      files[number] = {name, p.is_absolute() || dir.empty() ? name : (std::filesystem::path(dir) / p).string()};
      continue;
    }
    if (t.rfind(".loc", 0) == 0) {
      std::istringstream words(t.substr(4));
      words >> file >> line;
      continue;
    }
    bool label = t.back() == ':' && text[0] != '\t' && text[0] != ' ';
    if (label) {
      // A function's name starts a paragraph; branch targets stay in place.
      if (t.rfind(".L", 0) != 0) {
        out += fmt::format("\n{}\n", t);
        shownFile = shownLine = -2;
      } else out += fmt::format("{}\n", t);
      continue;
    }
    if (t[0] == '.' || t[0] == '#') continue; // other directives and comments
    if (file != shownFile || line != shownLine) {
      auto f = files.find(file);
      if (line <= 0 || f == files.end()) out += "    # (line 0: code of no single DSL line: a step without a source location, or merged from several lines)\n";
      else out += fmt::format("    # {}:{}: {}\n", f->second.shown, line, trim(sources.line(f->second.path, line)));
      shownFile = file;
      shownLine = line;
    }
    out += fmt::format("        {}\n", t);
  }
  return out;
}

} // namespace kiln::backends::llvm_backend
