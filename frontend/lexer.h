//===- frontend/lexer.h - tokens of the kiln DSL ----------------*- C++ -*-===//
//
// Splits DSL text into tokens with source locations. `#` starts a comment to
// the end of the line; newlines are plain whitespace (statements are told
// apart by their first token). Any byte that cannot start a token is a
// located error, so binary garbage fails cleanly on its first bad byte.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/diagnostic.h"

#include <string>
#include <vector>

namespace kiln::frontend {

enum class TokKind { End, Ident, Keyword, Int, Float, Punct };

struct Token {
  TokKind kind = TokKind::End;
  std::string text; ///< identifier, keyword, operator text, or the number as written
  double number = 0;
  SourceLoc loc;
};

/// Tokenizes a whole file; the last token is End.
std::vector<Token> tokenize(const std::string &text, const std::string &file);

} // namespace kiln::frontend
