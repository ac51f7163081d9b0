//===- runtime/output_guard.h - outputs that never destroy a file -*- C++ -*-===//
//
// Every command that writes a file checks the path before any work, with
// checkOutput():
//   1. An output is never an input of the same command (the same file by
//      device and inode, so `./d.tsv`, a symlink or a hard link to the data
//      count too) — not even with --force: `train --data d.tsv --out d.tsv`
//      would replace the data with a checkpoint.
//   2. An existing file is replaced without asking only when it already is
//      what is being written (a kiln checkpoint for --out, a compiler dump
//      for compile -o, a loss log for --loss-log, a safetensors file for
//      run --outputs, a metrics log for train --report, a page kiln wrote
//      for an HTML page) or is empty; anything else needs --force. Replacing
//      an older checkpoint stays as easy as it was.
//   3. The directory must take a new file: a probe file is created and
//      removed, so an unwritable --out is found before an epoch of training
//      rather than at the first save.
// Writes go through writeFileAtomic(), so a kill during a save leaves the
// previous file intact.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <string>
#include <vector>

namespace kiln::runtime {

enum class OutputKind {
  Checkpoint,   ///< a kiln checkpoint (safetensors with kiln's metadata format)
  CompilerDump, ///< what `kiln compile -o` writes: IR, DOT, AST, stats, memory plan
  LossLog,      ///< `step loss` lines
  SafeTensors,  ///< any safetensors file (`kiln run --outputs`)
  MetricsLog,   ///< a kiln metrics log (`kiln train --report DIR`'s metrics.jsonl)
  Page,         ///< an HTML page kiln wrote (report, predict --explain --html): it holds kPageMark
};

/// An input of the command, for the message when an output would replace it.
struct CommandInput {
  std::string role; ///< how the user named it: "--data", "the model", "--resume"
  std::string path;
};

/// Checks `path`, given as `option`, before the command does any work;
/// kiln::Error naming the option, the path and the reason otherwise.
void checkOutput(const std::string &option, const std::string &path, OutputKind kind,
                 const std::vector<CommandInput> &inputs, bool force);

/// Writes `bytes` to `path` atomically: `path.tmp.<pid>`, fsync, rename
/// over `path`, fsync of the directory. On any failure `path` keeps its old
/// contents and the temporary file is removed; temporaries of writers that
/// were killed (their pid is gone) are cleaned up first.
void writeFileAtomic(const std::string &path, const std::string &bytes);

/// What an existing file holds, by its first bytes: one of the kinds above
/// or a short description ("a kiln model", "text", "binary data").
std::string describeFile(const std::string &path);

/// The mark in the head of every HTML page kiln writes (train --report,
/// kiln report, predict --explain --html), by which describeFile() knows
/// one (a <meta> element, within the first 4 KiB).
inline constexpr const char *kPageMark = "<meta name=\"generator\" content=\"kiln\">";

} // namespace kiln::runtime
