//===- tests/fuzz/fuzz_support.h - shared pieces of the fuzz targets -*- C++ -*-===//
//
// Every target follows one policy, the same as the driver's: kiln::Error is a
// user error and an expected outcome for garbage input, anything else that
// escapes (another exception, a crash, a sanitizer report, an assert) is a
// finding. Formatting each caught error also exercises the diagnostic path
// (source quoting, caret placement) on hostile locations.
//
// Two of the entry points under test take a path, not bytes (loadCheckpoint,
// readExamples), and their files are being edited by others, so rather than
// growing them an in-memory API the input is handed over as an anonymous
// in-memory file (memfd) named through /proc/self/fd: no disk traffic, no
// temp-file clean-up, and the code under test runs exactly as in production.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/diagnostic.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <unistd.h>

namespace kiln::fuzz {

/// Runs `body`; a kiln::Error is the expected rejection of bad input and is
/// formatted (to exercise diagnostics) and dropped.
template <typename F> void expectOnlyKilnErrors(F body) {
  try {
    body();
  } catch (const kiln::Error &e) {
    // Quoting the source line under a hostile location is code worth fuzzing.
    (void)kiln::formatError(e);
  }
}

/// Aborts with a message: for oracle failures (a round trip that changes the
/// text), which no sanitizer would notice.
[[noreturn]] inline void oracleFailure(const char *what, std::string_view detail) {
  std::fprintf(stderr, "kiln fuzz oracle failed: %s\n%.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

/// One in-memory file reused for every input of the process.
class MemoryFile {
public:
  MemoryFile() {
    fd_ = ::memfd_create("kiln-fuzz-input", MFD_CLOEXEC);
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  MemoryFile(const MemoryFile &) = delete;
  MemoryFile &operator=(const MemoryFile &) = delete;

  /// Replaces the contents with `data` and returns a path that opens it.
  const std::string &write(const uint8_t *data, size_t size) {
    if (::ftruncate(fd_, 0) != 0) std::abort();
    size_t done = 0;
    while (done < size) {
      ssize_t r = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (r <= 0) std::abort();
      done += static_cast<size_t>(r);
    }
    return path_;
  }

private:
  int fd_ = -1;
  std::string path_;
};

} // namespace kiln::fuzz
