//===- ir/types.cpp - dtypes, dims, shapes and tensor types ---------------===//
//
// Printing and broadcasting of tensor types; see types.h.
//
//===----------------------------------------------------------------------===//
#include "ir/types.h"

#include "ir/diagnostic.h"

#include <cmath>
#include <fmt/format.h>

namespace kiln::ir {

const char *dtypeName(DType t) {
  switch (t) {
  case DType::F32: return "f32";
  case DType::I32: return "i32";
  case DType::Bool: return "bool";
  }
  return "?";
}

std::optional<DType> parseDType(const std::string &name) {
  if (name == "f32") return DType::F32;
  if (name == "i32") return DType::I32;
  if (name == "bool") return DType::Bool;
  return std::nullopt;
}

size_t dtypeSize(DType t) { return t == DType::Bool ? 1 : 4; }

std::string Dim::str() const {
  if (!isSymbolic()) return std::to_string(value);
  if (value == 0) return symbol;
  return fmt::format("{}{:+d}", symbol, value);
}

std::string shapeStr(const Shape &s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ",";
    out += s[i].str();
  }
  return out + "]";
}

std::string TensorType::str() const { return std::string(dtypeName(dtype)) + shapeStr(shape); }

std::optional<std::vector<int64_t>> concreteShape(const Shape &s, const SymbolBindings &b) {
  std::vector<int64_t> out;
  out.reserve(s.size());
  for (const Dim &d : s) {
    if (!d.isSymbolic()) {
      out.push_back(d.value);
      continue;
    }
    auto it = b.find(d.symbol);
    if (it == b.end()) return std::nullopt;
    int64_t extent = 0;
    if (__builtin_add_overflow(it->second, d.value, &extent) || extent < 0)
      throw Error(fmt::format("dim {} is negative with {} = {}", d.str(), d.symbol, it->second));
    out.push_back(extent);
  }
  return out;
}

std::optional<int64_t> checkedTensorBytes(DType dtype, const std::vector<int64_t> &extents) {
  int64_t bytes = static_cast<int64_t>(dtypeSize(dtype));
  // A zero extent makes the tensor empty whatever the others are; look for
  // one first so that [0, 2^62, 2^62] is empty rather than an overflow.
  for (int64_t e : extents) {
    if (e < 0) return std::nullopt;
    if (e == 0) bytes = 0;
  }
  for (int64_t e : extents)
    if (__builtin_mul_overflow(bytes, e, &bytes) || bytes > kMaxTensorBytes) return std::nullopt;
  return bytes;
}

std::string bytesStr(double b) {
  if (b < 1024) return fmt::format("{} B", static_cast<int64_t>(b));
  static const char *units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"};
  int u = -1;
  while (b >= 1024 && u < 7) b /= 1024, ++u;
  return fmt::format("{:.1f} {}", b, units[u]);
}

std::string tooLargeMessage(const std::string &what, DType dtype, const std::vector<int64_t> &extents) {
  double bytes = static_cast<double>(dtypeSize(dtype));
  std::string dims;
  for (int64_t e : extents) {
    bytes *= static_cast<double>(e);
    dims += (dims.empty() ? "" : ",") + std::to_string(e);
  }
  return fmt::format("{} would be {}[{}], {}; one tensor is limited to {}", what, dtypeName(dtype), dims,
                     bytesStr(bytes), bytesStr(static_cast<double>(kMaxTensorBytes)));
}

std::optional<std::string> typeTooLarge(const std::string &what, const TensorType &type) {
  std::vector<int64_t> constants;
  bool symbolic = false;
  for (const Dim &d : type.shape) {
    if (!d.isSymbolic() && d.value < 0) return std::nullopt;
    symbolic |= d.isSymbolic();
    constants.push_back(d.isSymbolic() ? 1 : d.value);
  }
  if (checkedTensorBytes(type.dtype, constants)) return std::nullopt;
  double bytes = static_cast<double>(dtypeSize(type.dtype));
  for (int64_t e : constants) bytes *= static_cast<double>(e);
  return fmt::format("{} would be {}, {}{}; one tensor is limited to {}", what, type.str(), bytesStr(bytes),
                     symbolic ? " before its symbols" : "", bytesStr(static_cast<double>(kMaxTensorBytes)));
}

int64_t numElements(const std::vector<int64_t> &extents) {
  if (!checkedTensorBytes(DType::Bool, extents)) throw Error(tooLargeMessage("a tensor", DType::Bool, extents));
  int64_t n = 1;
  for (int64_t e : extents) n *= e;
  return n;
}

std::optional<Shape> broadcastShapes(const Shape &a, const Shape &b) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    // Align from the right, as numpy does; a missing dim acts as 1.
    const Dim one = Dim::constant(1);
    const Dim &da = i < rank - a.size() ? one : a[i - (rank - a.size())];
    const Dim &db = i < rank - b.size() ? one : b[i - (rank - b.size())];
    if (da == db) out[i] = da;
    else if (!da.isSymbolic() && da.value == 1) out[i] = db;
    else if (!db.isSymbolic() && db.value == 1) out[i] = da;
    else return std::nullopt;
  }
  return out;
}

} // namespace kiln::ir
