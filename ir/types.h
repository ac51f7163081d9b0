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

/// One dimension: a non-negative constant, or a symbol bound at run time plus
/// a constant offset (`T`, `T-2`: a convolution's output is shorter than its
/// input by the kernel's width less one).
struct Dim {
  int64_t value = 0;  ///< the extent when symbol is empty, else the offset added to the symbol
  std::string symbol; ///< non-empty for a symbolic dim

  static Dim constant(int64_t v) { return Dim{v, {}}; }
  static Dim named(std::string s, int64_t offset = 0) { return Dim{offset, std::move(s)}; }
  bool isSymbolic() const { return !symbol.empty(); }
  /// The same dim `delta` larger: constants add, symbols move their offset.
  Dim plus(int64_t delta) const { return Dim{value + delta, symbol}; }
  bool operator==(const Dim &o) const = default;
  /// `4`, `T`, `T-2`, `T+1`.
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
/// Throws kiln::Error when an offset dim comes out negative (`T-2` with T = 1);
/// Graph::bindSymbols checks the bound inputs against that first.
std::optional<std::vector<int64_t>> concreteShape(const Shape &s, const SymbolBindings &b);

/// The largest tensor kiln makes or plans: 2^47 bytes (128 TiB, the x86-64
/// user address space). Every element count and byte size of a tensor is
/// checked against it with overflow-checked arithmetic, so that an absurd
/// --param, --bind, --batch or reshape is an error naming the value instead
/// of a product that wraps around to a small buffer.
inline constexpr int64_t kMaxTensorBytes = int64_t(1) << 47;

/// Bytes of a tensor of `dtype` with these extents, or nullopt when an
/// extent is negative or the size exceeds kMaxTensorBytes (checked, so it
/// never wraps).
std::optional<int64_t> checkedTensorBytes(DType dtype, const std::vector<int64_t> &extents);

/// "16.0 EiB"-style size for messages; exact below 1 KiB. Takes a double so
/// that sizes too large for int64 can still be named.
std::string bytesStr(double bytes);

/// Number of elements of concrete extents; throws kiln::Error when a tensor
/// of these extents would exceed kMaxTensorBytes as bool (one byte each).
/// Callers that can name the value check with checkedTensorBytes first.
int64_t numElements(const std::vector<int64_t> &extents);

/// nullopt when the constant dims of `type` (every symbol taken as 1) fit in
/// kMaxTensorBytes; otherwise the error message for `what`. Checked where
/// types are made (shape rules, builder, verifier), so an absurd
/// hyper-parameter is reported at the DSL line that uses it. Negative dims
/// are not this check's business (the shape rules reject them).
std::optional<std::string> typeTooLarge(const std::string &what, const TensorType &type);

/// The error for a tensor too large to make: names `what` (a value, an
/// option), its type and extents, and the limit.
std::string tooLargeMessage(const std::string &what, DType dtype, const std::vector<int64_t> &extents);

/// Numpy broadcasting of two shapes. Symbolic dims broadcast only with
/// themselves or with the constant 1. Returns nullopt when incompatible.
std::optional<Shape> broadcastShapes(const Shape &a, const Shape &b);

} // namespace kiln::ir
