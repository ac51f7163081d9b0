//===- ir/types.h - dtypes, dims, shapes and tensor types -------*- C++ -*-===//
//
// A tensor type is a dtype plus a shape. A shape's dims are either constants or
// named symbols (`B`, `T`): graphs are written once for all batch sizes and
// sequence lengths, and the symbols are bound from the input shapes when a
// graph runs. Nothing here knows about ops or graphs.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kiln::ir {

/// Element types. bool is stored as one byte per element.
enum class DType : uint8_t { F32, I32, Bool };

const char *dtypeName(DType t);
std::optional<DType> parseDType(const std::string &name);
size_t dtypeSize(DType t);

/// One dimension: a non-negative constant or a symbol bound at run time.
struct Dim {
  int64_t value = 0;  ///< meaningful when symbol is empty
  std::string symbol; ///< non-empty for a symbolic dim

  static Dim constant(int64_t v) { return Dim{v, {}}; }
  static Dim named(std::string s) { return Dim{0, std::move(s)}; }
  bool isSymbolic() const { return !symbol.empty(); }
  bool operator==(const Dim &o) const = default;
  std::string str() const;
};

using Shape = std::vector<Dim>;

std::string shapeStr(const Shape &s);

/// Symbol bindings, e.g. {B: 64, T: 128}.
using SymbolBindings = std::map<std::string, int64_t>;

struct TensorType {
  DType dtype = DType::F32;
  Shape shape;

  size_t rank() const { return shape.size(); }
  bool operator==(const TensorType &o) const = default;
  /// `f32[B,T,128]`; a scalar is `f32[]`.
  std::string str() const;
};

/// Concrete extents of a shape under bindings; nullopt if a symbol is unbound.
std::optional<std::vector<int64_t>> concreteShape(const Shape &s, const SymbolBindings &b);

/// Number of elements of concrete extents.
int64_t numElements(const std::vector<int64_t> &extents);

/// Numpy broadcasting of two shapes. Symbolic dims broadcast only with
/// themselves or with the constant 1. Returns nullopt when incompatible.
std::optional<Shape> broadcastShapes(const Shape &a, const Shape &b);

} // namespace kiln::ir
