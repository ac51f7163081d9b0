//===- runtime/tensor.cpp - dense host tensors ----------------------------===//
//
// See tensor.h.
//
//===----------------------------------------------------------------------===//
#include "runtime/tensor.h"

#include <cassert>
#include <cstring>

namespace kiln::runtime {

Tensor::Tensor(ir::DType dtype, std::vector<int64_t> shape)
    : dtype_(dtype), shape_(std::move(shape)), numel_(ir::numElements(shape_)),
      bytes_(static_cast<size_t>(numel_) * ir::dtypeSize(dtype)) {}

std::span<float> Tensor::f32() {
  assert(dtype_ == ir::DType::F32);
  return {reinterpret_cast<float *>(bytes_.data()), static_cast<size_t>(numel_)};
}
std::span<const float> Tensor::f32() const {
  assert(dtype_ == ir::DType::F32);
  return {reinterpret_cast<const float *>(bytes_.data()), static_cast<size_t>(numel_)};
}
std::span<int32_t> Tensor::i32() {
  assert(dtype_ == ir::DType::I32);
  return {reinterpret_cast<int32_t *>(bytes_.data()), static_cast<size_t>(numel_)};
}
std::span<const int32_t> Tensor::i32() const {
  assert(dtype_ == ir::DType::I32);
  return {reinterpret_cast<const int32_t *>(bytes_.data()), static_cast<size_t>(numel_)};
}
std::span<uint8_t> Tensor::b8() {
  assert(dtype_ == ir::DType::Bool);
  return {reinterpret_cast<uint8_t *>(bytes_.data()), static_cast<size_t>(numel_)};
}
std::span<const uint8_t> Tensor::b8() const {
  assert(dtype_ == ir::DType::Bool);
  return {reinterpret_cast<const uint8_t *>(bytes_.data()), static_cast<size_t>(numel_)};
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

} // namespace kiln::runtime
