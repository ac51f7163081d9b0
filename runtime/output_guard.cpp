//===- runtime/output_guard.cpp - outputs that never destroy a file -------===//
//
// See output_guard.h. Files are recognised by their first bytes (at most a
// safetensors header), never by their names: `model.ckpt` may be anything.
//
//===----------------------------------------------------------------------===//
#include "runtime/output_guard.h"

#include "ir/diagnostic.h"
#include "runtime/json.h"
#include "runtime/metrics_log.h"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <signal.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln::runtime {

namespace {

const char *kindName(OutputKind kind) {
  switch (kind) {
  case OutputKind::Checkpoint: return "a kiln checkpoint";
  case OutputKind::CompilerDump: return "kiln compiler output";
  case OutputKind::LossLog: return "a loss log";
  case OutputKind::SafeTensors: return "a safetensors file";
  case OutputKind::MetricsLog: return "a kiln metrics log";
  case OutputKind::Page: return "a page kiln wrote";
  }
  return "?";
}

/// Up to `limit` bytes from the start of the file; empty when unreadable.
std::string readPrefix(const std::string &path, size_t limit) {
  std::string out;
  FILE *f = std::fopen(path.c_str(), "rb");
  if (!f) return out;
  out.resize(limit);
  out.resize(std::fread(out.data(), 1, limit, f));
  std::fclose(f);
  return out;
}

/// The JSON header of a safetensors file, or empty when it is not one.
std::string safeTensorsHeader(const std::string &path) {
  std::string head = readPrefix(path, 8);
  if (head.size() < 8) return {};
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(head[i]);
  // The format caps the header at 100 MB; a text file's first 8 bytes read
  // as a much larger number.
  if (n < 2 || n > 100'000'000) return {};
  std::string all = readPrefix(path, 8 + n);
  if (all.size() < 8 + n || all[8] != '{') return {};
  return all.substr(8);
}

bool isCheckpoint(const std::string &header) {
  try {
    json::Value v = json::parse(header);
    const json::Value *md = v.find("__metadata__");
    const json::Value *format = md && md->isObject() ? md->find("format") : nullptr;
    return format && format->isString() && format->asString().starts_with("kiln-checkpoint-");
  } catch (const Error &) {
    return false;
  }
}

bool isLossLog(const std::string &text) {
  // Every complete line is `STEP LOSS`.
  size_t pos = 0, lines = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) break; // a cut-off last line says nothing
    std::string line = text.substr(pos, nl - pos);
    char *end = nullptr;
    std::strtoll(line.c_str(), &end, 10);
    if (end == line.c_str() || *end != ' ') return false;
    const char *loss = end + 1;
    std::strtod(loss, &end);
    if (end == loss || *end != '\0') return false;
    ++lines;
    pos = nl + 1;
  }
  return lines > 0;
}

bool isMetricsLog(const std::string &text) {
  // The first line is a run record; json::write orders the keys, so
  // "format" is among the first few (runtime/metrics_log.cpp).
  std::string first = text.substr(0, text.find('\n'));
  return first.starts_with("{") && first.find(std::string("\"format\":\"") + kMetricsFormat + "\"") != std::string::npos;
}

bool isCompilerDump(const std::string &text) {
  for (const char *start : {"graph @", "digraph ", "Program ", "; the llvm backend's code", "# the llvm backend's code"})
    if (text.starts_with(start)) return true;
  // An ELF relocatable object (e_type 1, little-endian), as --emit=obj writes.
  return text.size() >= 18 && text.starts_with("\x7f" "ELF") && text[16] == 1 && text[17] == 0;
}

} // namespace

std::string describeFile(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "nothing";
  if (S_ISDIR(st.st_mode)) return "a directory";
  if (st.st_size == 0) return "an empty file";
  std::string header = safeTensorsHeader(path);
  if (!header.empty()) return isCheckpoint(header) ? kindName(OutputKind::Checkpoint) : kindName(OutputKind::SafeTensors);
  std::string text = readPrefix(path, 4096);
  if (isCompilerDump(text)) return kindName(OutputKind::CompilerDump);
  if (isLossLog(text)) return kindName(OutputKind::LossLog);
  if (isMetricsLog(text)) return kindName(OutputKind::MetricsLog);
  if (text.find(kPageMark) != std::string::npos) return kindName(OutputKind::Page);
  if (text.find("model ") != std::string::npos && text.find("fn forward") != std::string::npos) return "a kiln model";
  if (text.find('\t') != std::string::npos) return "tab-separated text (data?)";
  if (text.find('\0') != std::string::npos) return "binary data";
  return "text";
}

void checkOutput(const std::string &option, const std::string &path, OutputKind kind,
                 const std::vector<CommandInput> &inputs, bool force) {
  if (path.empty()) throw Error(fmt::format("{} needs a file name", option));
  struct stat out;
  bool exists = ::stat(path.c_str(), &out) == 0;
  if (exists) {
    for (const CommandInput &in : inputs) {
      struct stat st;
      if (!in.path.empty() && ::stat(in.path.c_str(), &st) == 0 && st.st_dev == out.st_dev && st.st_ino == out.st_ino)
        throw Error(fmt::format("{} {} is {} of this command ({}); refusing to overwrite an input", option, path,
                                in.role == "the model" ? "the model" : "the file given as " + in.role, in.path));
    }
    if (S_ISDIR(out.st_mode)) throw Error(fmt::format("{} {} is a directory", option, path));
    std::string what = describeFile(path);
    bool sameKind = what == kindName(kind) || what == "an empty file" ||
                    (kind == OutputKind::SafeTensors && what == kindName(OutputKind::Checkpoint));
    if (!sameKind && !force)
      throw Error(fmt::format("{} {} exists and holds {}, not {}; pass --force to replace it", option, path, what,
                              kindName(kind)));
  }
  // A probe file in the same directory: the atomic writers create their
  // temporary file there, so this is the permission that matters.
  std::string probe = (path.find('/') == std::string::npos ? "./" : path.substr(0, path.rfind('/') + 1)) +
                      ".kiln-probe-XXXXXX";
  int fd = ::mkstemp(probe.data());
  if (fd < 0)
    throw Error(fmt::format("cannot write {} {}: {} (checked before any work)", option, path, std::strerror(errno)));
  ::close(fd);
  ::unlink(probe.c_str());
}

namespace {
[[noreturn]] void failIo(const std::string &what, const std::string &path) {
  throw Error("cannot " + what + " '" + path + "': " + std::strerror(errno));
}
} // namespace

namespace {
/// Removes `path.tmp.<pid>` files left by writers that were killed mid-write
/// (their pid no longer runs), so that repeated crashes do not litter the
/// directory with partial checkpoints.
void removeStaleTemps(const std::string &path) {
  auto slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp.";
  DIR *d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent *e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind(prefix, 0) != 0) continue;
    std::string pidText = name.substr(prefix.size());
    if (pidText.empty() || pidText.find_first_not_of("0123456789") != std::string::npos || pidText.size() > 9) continue;
    pid_t pid = static_cast<pid_t>(std::stol(pidText));
    if (pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) ::unlink((dir + "/" + name).c_str());
  }
  ::closedir(d);
}
} // namespace

void writeFileAtomic(const std::string &path, const std::string &bytes) {
  removeStaleTemps(path);
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) failIo("create", tmp);
  // On any failure the temp file goes and `path` keeps its old contents.
  auto abandon = [&](const char *what, const std::string &p) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    errno = err;
    failIo(what, p);
  };
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t r = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) abandon("write", tmp);
    done += static_cast<size_t>(r);
  }
  if (::fsync(fd) != 0) abandon("sync", tmp);
  int rc = ::close(fd);
  fd = -1;
  if (rc != 0) abandon("write", tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) abandon("replace", path);
  // Make the rename itself durable. Best effort: some file systems refuse
  // to open or sync a directory, and the file is already complete.
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

} // namespace kiln::runtime
