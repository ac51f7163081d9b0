//===- runtime/safetensors.h - reading and writing .safetensors -*- C++ -*-===//
//
// The safetensors format: 8 bytes little-endian header length N, N bytes of
// JSON {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
// "__metadata__": {"key": "string", ...}}, then the raw little-endian data.
// Reading validates everything a hostile file could get wrong (header length,
// JSON, dtypes, shapes, offsets, overlaps) and reports it as kiln::Error, never
// a crash or an unbounded allocation. F64/I64/I16/I8/U8/BOOL tensors written
// by other tools are converted on load to kiln's f32/i32/bool (integers out of
// i32 range are an error). Writing is atomic: temp file, fsync, rename.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/tensor.h"

#include <map>
#include <string>

namespace kiln::runtime {

struct SafeTensors {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

SafeTensors readSafeTensors(const std::string &path);
/// Parses an in-memory file image; `what` names it in errors.
SafeTensors parseSafeTensors(const std::string &bytes, const std::string &what);
/// Serialises to the file image (tensors in name order).
std::string serializeSafeTensors(const SafeTensors &st);
/// Atomic write: `path.tmp.<pid>`, fsync, rename over `path`.
void writeSafeTensors(const std::string &path, const SafeTensors &st);

} // namespace kiln::runtime
