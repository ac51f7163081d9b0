//===- ir/diagnostic.h - source locations and user-facing errors -*- C++ -*-===//
//
// Everything a user can trigger (a bad model, a bad IR file, a shape that does
// not fit) is reported by throwing kiln::Error, which carries the DSL source
// location. The driver catches it and prints `file:line:col: error: message`
// followed by the source line and a caret. Internal invariants use assert.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace kiln {

/// A position in a source file; line and column are 1-based, 0 means unknown.
struct SourceLoc {
  std::string file;
  int line = 0;
  int col = 0;

  bool known() const { return line > 0; }
  bool operator==(const SourceLoc &o) const = default;
  /// `file:line:col`, or just `file` when line is unknown.
  std::string str() const;
};

/// A recoverable, user-facing error.
class Error : public std::runtime_error {
public:
  explicit Error(std::string message, SourceLoc loc = {})
      : std::runtime_error(message), loc_(std::move(loc)), message_(std::move(message)) {}
  const SourceLoc &loc() const { return loc_; }
  const std::string &message() const { return message_; }

private:
  SourceLoc loc_;
  std::string message_;
};

/// Remembers the text of source files so that errors can quote the line.
void registerSource(const std::string &file, const std::string &text);

/// `file:line:col: error: message` plus the quoted source line and a caret
/// when the text of the file is registered. Ends with a newline.
std::string formatError(const Error &e);

/// Edit distance, used to suggest the nearest known name.
size_t editDistance(const std::string &a, const std::string &b);

/// The candidate closest to `name`, or "" when none is close enough.
std::string nearestName(const std::string &name, const std::vector<std::string> &candidates);

} // namespace kiln
