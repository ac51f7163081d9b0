//===- tools/html.h - text made safe for HTML pages --------------*- C++ -*-===//
//
// The pages kiln writes (predict --explain --html, train --report) are one
// self-contained file each; every piece of user text (texts, labels, file
// names) that goes into them passes through escape(), so that a text
// containing markup shows as the characters it is.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <string>
#include <string_view>

namespace kiln::html {

/// & < > " ' as character references; everything else (valid UTF-8) as it is.
inline std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
    case '&': out += "&amp;"; break;
    case '<': out += "&lt;"; break;
    case '>': out += "&gt;"; break;
    case '"': out += "&quot;"; break;
    case '\'': out += "&#39;"; break;
    default: out += c;
    }
  }
  return out;
}

} // namespace kiln::html
