//===- tests/tools/print_tokens.cpp - the tokenizer's output, for tests ---===//
//
// usage: kiln_print_tokens FILE
//
// Prints, for each line of FILE (split at LF only), the tokens that
// runtime::tokenizeText() gives, separated by single spaces: no token holds
// a space, since every space separates. tests/parity/tokenizer_parity.py
// compares this with the Python tokenizer; it is a test tool, not a kiln
// command. A line with invalid UTF-8 prints `FILE:LINE: error: MESSAGE` on
// stderr and the program exits 1 after the last line.
//
//===----------------------------------------------------------------------===//
#include "ir/diagnostic.h"
#include "runtime/text.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fputs("usage: kiln_print_tokens FILE\n", stderr);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "kiln_print_tokens: cannot open '%s'\n", argv[1]);
    return 2;
  }
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  int status = 0;
  size_t lineNumber = 0;
  for (size_t pos = 0; pos < all.size();) {
    size_t end = all.find('\n', pos);
    if (end == std::string::npos) end = all.size();
    std::string line = all.substr(pos, end - pos);
    pos = end + 1;
    ++lineNumber;
    try {
      std::string out;
      for (const std::string &t : kiln::runtime::tokenizeText(line)) out += (out.empty() ? "" : " ") + t;
      std::printf("%s\n", out.c_str());
    } catch (const kiln::Error &e) {
      std::printf("\n");
      std::fprintf(stderr, "%s:%zu: error: %s\n", argv[1], lineNumber, e.message().c_str());
      status = 1;
    }
  }
  return status;
}
