//===- runtime/tensor.cpp - dense host tensors ----------------------------===//
//
// See tensor.h.
//
//===----------------------------------------------------------------------===//
#include "runtime/tensor.h"

#include "ir/diagnostic.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

namespace kiln::runtime {

namespace {
/// Byte size of a tensor, checked: a shape whose size would overflow or
/// exceed ir::kMaxTensorBytes is an error, never a wrapped small buffer.
size_t checkedByteSize(ir::DType dtype, const std::vector<int64_t> &shape) {
  auto bytes = ir::checkedTensorBytes(dtype, shape);
  if (!bytes) throw Error(ir::tooLargeMessage("a tensor", dtype, shape));
  return static_cast<size_t>(*bytes);
}
} // namespace

Tensor::Tensor(ir::DType dtype, std::vector<int64_t> shape)
    : dtype_(dtype), shape_(std::move(shape)), bytes_(checkedByteSize(dtype_, shape_)), data_(bytes_.data()),
      byteSize_(bytes_.size()) {
  numel_ = static_cast<int64_t>(byteSize_ / ir::dtypeSize(dtype_));
}

Tensor Tensor::view(ir::DType dtype, std::vector<int64_t> shape, void *data) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.byteSize_ = checkedByteSize(dtype, t.shape_);
  t.numel_ = static_cast<int64_t>(t.byteSize_ / ir::dtypeSize(dtype));
  t.data_ = static_cast<std::byte *>(data);
  return t;
}

Tensor::Tensor(const Tensor &o)
    : dtype_(o.dtype_), shape_(o.shape_), numel_(o.numel_), bytes_(o.bytes_), byteSize_(o.byteSize_) {
  data_ = o.bytes_.empty() ? o.data_ : bytes_.data();
}

Tensor &Tensor::operator=(const Tensor &o) {
  if (this == &o) return *this;
  dtype_ = o.dtype_;
  shape_ = o.shape_;
  numel_ = o.numel_;
  bytes_ = o.bytes_;
  byteSize_ = o.byteSize_;
  data_ = o.bytes_.empty() ? o.data_ : bytes_.data();
  return *this;
}

Tensor::Tensor(Tensor &&o) noexcept
    : dtype_(o.dtype_), shape_(std::move(o.shape_)), numel_(o.numel_), bytes_(std::move(o.bytes_)),
      data_(o.data_), byteSize_(o.byteSize_) {
  o.data_ = nullptr;
  o.byteSize_ = 0;
  o.numel_ = 0;
}

Tensor &Tensor::operator=(Tensor &&o) noexcept {
  if (this == &o) return *this;
  dtype_ = o.dtype_;
  shape_ = std::move(o.shape_);
  numel_ = o.numel_;
  bytes_ = std::move(o.bytes_);
  data_ = o.data_;
  byteSize_ = o.byteSize_;
  o.data_ = nullptr;
  o.byteSize_ = 0;
  o.numel_ = 0;
  return *this;
}

std::span<float> Tensor::f32() {
  assert(dtype_ == ir::DType::F32);
  return {reinterpret_cast<float *>(data_), static_cast<size_t>(numel_)};
}
std::span<const float> Tensor::f32() const {
  assert(dtype_ == ir::DType::F32);
  return {reinterpret_cast<const float *>(data_), static_cast<size_t>(numel_)};
}
std::span<int32_t> Tensor::i32() {
  assert(dtype_ == ir::DType::I32);
  return {reinterpret_cast<int32_t *>(data_), static_cast<size_t>(numel_)};
}
std::span<const int32_t> Tensor::i32() const {
  assert(dtype_ == ir::DType::I32);
  return {reinterpret_cast<const int32_t *>(data_), static_cast<size_t>(numel_)};
}
std::span<uint8_t> Tensor::b8() {
  assert(dtype_ == ir::DType::Bool);
  return {reinterpret_cast<uint8_t *>(data_), static_cast<size_t>(numel_)};
}
std::span<const uint8_t> Tensor::b8() const {
  assert(dtype_ == ir::DType::Bool);
  return {reinterpret_cast<const uint8_t *>(data_), static_cast<size_t>(numel_)};
}

std::string Tensor::typeStr() const {
  std::string s = std::string(ir::dtypeName(dtype_)) + "[";
  for (size_t i = 0; i < shape_.size(); ++i) s += (i ? "," : "") + std::to_string(shape_[i]);
  return s + "]";
}

Tensor Tensor::fromF32(std::vector<int64_t> shape, const std::vector<float> &values) {
  Tensor t(ir::DType::F32, std::move(shape));
  assert(values.size() == static_cast<size_t>(t.numel()));
  if (t.byteSize()) std::memcpy(t.raw(), values.data(), t.byteSize());
  return t;
}
Tensor Tensor::fromI32(std::vector<int64_t> shape, const std::vector<int32_t> &values) {
  Tensor t(ir::DType::I32, std::move(shape));
  assert(values.size() == static_cast<size_t>(t.numel()));
  if (t.byteSize()) std::memcpy(t.raw(), values.data(), t.byteSize());
  return t;
}
Tensor Tensor::fromBool(std::vector<int64_t> shape, const std::vector<uint8_t> &values) {
  Tensor t(ir::DType::Bool, std::move(shape));
  assert(values.size() == static_cast<size_t>(t.numel()));
  if (t.byteSize()) std::memcpy(t.raw(), values.data(), t.byteSize());
  return t;
}

std::optional<int64_t> firstNonFinite(const Tensor &t) {
  if (t.dtype() != ir::DType::F32) return std::nullopt;
  auto x = t.f32();
  constexpr uint32_t exponent = 0x7f800000u; // all ones: infinity or NaN
  // A branch-free pass over blocks finds whether there is one; only then
  // is the block searched for the index.
  constexpr size_t block = 4096;
  for (size_t start = 0; start < x.size(); start += block) {
    size_t end = std::min(x.size(), start + block);
    uint32_t any = 0;
    for (size_t i = start; i < end; ++i) {
      uint32_t bits;
      std::memcpy(&bits, &x[i], sizeof bits);
      any |= static_cast<uint32_t>((bits & exponent) == exponent);
    }
    if (!any) continue;
    for (size_t i = start; i < end; ++i)
      if (!std::isfinite(x[i])) return static_cast<int64_t>(i);
  }
  return std::nullopt;
}

} // namespace kiln::runtime
