//===- runtime/text.h - turning text into token ids -------------*- C++ -*-===//
//
// The UTF-8 tokenizer: lowercase (ASCII and Latin-1 letters), words are runs
// of letters and digits, each CJK ideograph is a token of its own, everything
// else separates. Invalid UTF-8 is reported with its byte offset.
//
// Until a model has a vocabulary (built from training data), hashedIds() maps
// words to ids in [2, vocab) with a fixed hash, keeping 0 for <pad> and 1 for
// <unk>; it lets an untrained model run on text, which is what the demo does
// before training exists.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/tensor.h"

#include <string>
#include <vector>

namespace kiln::runtime {

/// Splits UTF-8 text into lowercased tokens; kiln::Error on invalid UTF-8.
std::vector<std::string> tokenizeText(const std::string &text);

/// Token ids by a stable hash into [2, vocab).
std::vector<int32_t> hashedIds(const std::vector<std::string> &tokens, int64_t vocab);

/// Pads id sequences with 0 to the longest (cut at maxLen when > 0) into an
/// i32[B,T] tensor.
Tensor padBatch(const std::vector<std::vector<int32_t>> &seqs, int64_t maxLen = 0);

} // namespace kiln::runtime
