//===- tests/fuzz/fuzz_data.cpp - libFuzzer target: TSV/CSV/JSONL reader -===//
//
// Feeds arbitrary bytes to readExamples (`kiln train --data`, `kiln eval`)
// through an in-memory file (see fuzz_support.h), then through everything
// training does with what was read: labels, vocabulary, tokenizing and
// encoding, the validation split, shuffling and padded batches.
//
// The first byte of the input picks the mode, so that one corpus covers all
// three formats, strict and --skip-bad: one of "tcjTCJ" (TSV, CSV, JSONL;
// lower case strict, upper case skipping bad records), any other byte by its
// value modulo 6. The committed seeds start with a readable mode letter.
//
//===----------------------------------------------------------------------===//
#include "runtime/data.h"
#include "tests/fuzz/fuzz_support.h"

#include <algorithm>
#include <cstring>
#include <string>

using namespace kiln;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  static const char modes[] = "tcjTCJ";
  const char *letter = data[0] ? std::strchr(modes, data[0]) : nullptr;
  int mode = letter ? static_cast<int>(letter - modes) : data[0] % 6;
  runtime::ReadOptions options;
  options.format = mode % 3 == 0 ? runtime::DataFormat::Tsv
                   : mode % 3 == 1 ? runtime::DataFormat::Csv
                                   : runtime::DataFormat::Jsonl;
  options.skipBad = mode >= 3;

  static fuzz::MemoryFile input;
  const std::string &path = input.write(data + 1, size - 1);

  fuzz::expectOnlyKilnErrors([&] {
    runtime::ReadStats stats;
    std::vector<runtime::RawExample> examples = runtime::readExamples(path, options, &stats);
    if (examples.empty()) fuzz::oracleFailure("readExamples returned no examples instead of an error", "");
    if (stats.records != examples.size())
      fuzz::oracleFailure("ReadStats.records differs from the number of examples returned", "");

    runtime::LabelSet labels = runtime::LabelSet::fromExamples(examples);
    runtime::Vocabulary vocab = runtime::Vocabulary::build(examples, 64);
    runtime::EncodedData encoded = runtime::encodeExamples(examples, vocab, labels, 16);
    for (const auto &ids : encoded.ids)
      if (ids.empty() || ids.size() > 16) fuzz::oracleFailure("an encoded example is empty or over max_len", "");

    std::vector<runtime::RawExample> train, valid;
    runtime::splitExamples(examples, 0.25, 7, train, valid);
    if (train.size() + valid.size() != examples.size()) fuzz::oracleFailure("the split lost examples", "");
    std::vector<size_t> order = runtime::epochOrder(encoded.ids.size(), 7, 1, true);
    for (size_t begin = 0; begin < order.size(); begin += 4) {
      runtime::Batch batch = runtime::makeBatch(encoded, order, begin, std::min(order.size(), begin + 4));
      (void)batch;
    }
  });
  return 0;
}
