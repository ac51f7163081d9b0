//===- ir/types.cpp - dtypes, dims, shapes and tensor types ---------------===//
//
// Printing and broadcasting of tensor types; see types.h.
//
//===----------------------------------------------------------------------===//
#include "ir/types.h"

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

std::string Dim::str() const { return isSymbolic() ? symbol : std::to_string(value); }

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
    out.push_back(it->second);
  }
  return out;
}

int64_t numElements(const std::vector<int64_t> &extents) {
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
