//===- tests/fuzz/replay_main.cpp - runs a fuzz target without libFuzzer --===//
//
// usage: kiln_fuzz_replay_T PATH...
//
// A main() for the fuzz entry points in builds without libFuzzer (GCC, the
// normal and the sanitized build): feeds every file named, and every file in
// every directory named, to LLVMFuzzerTestOneInput once, the way libFuzzer
// replays a crash file. So the committed regressions and seeds run under
// ctest in every build, and under GCC's ASan+UBSan in the sanitized one.
// A finding crashes the process (sanitizer report or abort), as in libFuzzer.
//
//===----------------------------------------------------------------------===//
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    fs::path p = argv[i];
    if (fs::is_directory(p)) {
      for (const auto &entry : fs::directory_iterator(p))
        if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') inputs.push_back(entry.path());
    } else if (fs::is_regular_file(p)) {
      inputs.push_back(p);
    } else {
      std::fprintf(stderr, "replay: no such file or directory: %s\n", argv[i]);
      return 2;
    }
  }
  std::sort(inputs.begin(), inputs.end());
  for (const fs::path &p : inputs) {
    std::ifstream in(p, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // A fresh copy per input, so that a read past the end is a heap overflow
    // that ASan sees rather than a read of the next input.
    std::vector<uint8_t> data(bytes.begin(), bytes.end());
    LLVMFuzzerTestOneInput(data.data(), data.size());
  }
  std::printf("replayed %zu inputs\n", inputs.size());
  return 0;
}
