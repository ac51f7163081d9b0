//===- tests/fuzz/fuzz_safetensors.cpp - libFuzzer target: safetensors reader -===//
//
// Feeds arbitrary bytes to parseSafeTensors, the in-memory core of every
// weights and checkpoint load (`kiln run --weights`, `kiln eval --ckpt`).
// The reader promises to reject anything hostile as kiln::Error without an
// unbounded allocation; ASan's allocation limit (-rss_limit_mb, and
// -malloc_limit_mb in scripts/fuzz) turns a broken promise into a finding.
// Oracle for accepted files: serialising what was read and reading that back
// gives the same image again, so the writer and the reader agree.
//
//===----------------------------------------------------------------------===//
#include "runtime/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

#include <string>

using namespace kiln;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string bytes(reinterpret_cast<const char *>(data), size);

  runtime::SafeTensors st;
  bool valid = false;
  fuzz::expectOnlyKilnErrors([&] {
    st = runtime::parseSafeTensors(bytes, "fuzz.safetensors");
    valid = true;
  });
  if (!valid) return 0;

  std::string image;
  try {
    image = runtime::serializeSafeTensors(st);
  } catch (const Error &e) {
    fuzz::oracleFailure("a file that was read cannot be written back", formatError(e));
  }
  try {
    std::string again = runtime::serializeSafeTensors(runtime::parseSafeTensors(image, "written.safetensors"));
    if (again != image) fuzz::oracleFailure("writing what was read back does not reproduce the file", image);
  } catch (const Error &e) {
    fuzz::oracleFailure("a file written by serializeSafeTensors does not read back", formatError(e));
  }
  return 0;
}
