//===- tests/fuzz/fuzz_checkpoint.cpp - libFuzzer target: checkpoint loader -===//
//
// Feeds arbitrary bytes to loadCheckpoint (`kiln eval/predict --ckpt`,
// `kiln train --resume`) through an in-memory file (see fuzz_support.h): the
// safetensors layer, then the metadata checks (format, vocab, labels, JSON
// maps, run position). A rejected file must be a kiln::Error. An accepted one
// must satisfy what loadCheckpoint documents, which the callers rely on
// without checking again: the vocabulary starts with <pad>, <unk> and has no
// duplicates, and there is at least one label.
//
//===----------------------------------------------------------------------===//
#include "runtime/checkpoint.h"
#include "tests/fuzz/fuzz_support.h"

#include <set>
#include <string>

using namespace kiln;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static fuzz::MemoryFile input;
  const std::string &path = input.write(data, size);

  runtime::Checkpoint ckpt;
  bool valid = false;
  fuzz::expectOnlyKilnErrors([&] {
    ckpt = runtime::loadCheckpoint(path);
    valid = true;
  });
  if (!valid) return 0;

  if (ckpt.vocab.size() < 2 || ckpt.vocab[0] != "<pad>" || ckpt.vocab[1] != "<unk>")
    fuzz::oracleFailure("an accepted checkpoint's vocabulary does not start with <pad>, <unk>", "");
  if (std::set<std::string>(ckpt.vocab.begin(), ckpt.vocab.end()).size() != ckpt.vocab.size())
    fuzz::oracleFailure("an accepted checkpoint's vocabulary has duplicates", "");
  if (ckpt.labels.empty()) fuzz::oracleFailure("an accepted checkpoint has no labels", "");
  if (ckpt.epoch < 0 || ckpt.batch < 0 || ckpt.step < 0)
    fuzz::oracleFailure("an accepted checkpoint has a negative run position", "");
  size_t model = runtime::modelTensors(ckpt).size();
  if (model > ckpt.tensors.size()) fuzz::oracleFailure("modelTensors returned more tensors than there are", "");
  return 0;
}
