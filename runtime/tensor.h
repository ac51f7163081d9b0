//===- runtime/tensor.h - dense host tensors --------------------*- C++ -*-===//
//
// A Tensor is a dtype, concrete extents and a contiguous row-major buffer. It
// is what flows into and out of every backend and what safetensors files
// hold. bool elements are one byte each (0 or 1). A tensor normally owns its
// buffer; Tensor::view() makes one over memory owned elsewhere (a backend's
// arena), which copies shallowly and must not outlive that memory.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/types.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace kiln::runtime {

class Tensor {
public:
  Tensor() = default;
  /// Zero-filled tensor.
  Tensor(ir::DType dtype, std::vector<int64_t> shape);
  /// A non-owning tensor over `data`, which must hold numel * dtypeSize bytes.
  static Tensor view(ir::DType dtype, std::vector<int64_t> shape, void *data);

  Tensor(const Tensor &other);
  Tensor &operator=(const Tensor &other);
  Tensor(Tensor &&other) noexcept;
  Tensor &operator=(Tensor &&other) noexcept;
  bool isView() const { return data_ != nullptr && bytes_.empty() && byteSize_ > 0; }

  ir::DType dtype() const { return dtype_; }
  const std::vector<int64_t> &shape() const { return shape_; }
  size_t rank() const { return shape_.size(); }
  int64_t numel() const { return numel_; }
  size_t byteSize() const { return byteSize_; }

  std::byte *raw() { return data_; }
  const std::byte *raw() const { return data_; }

  // Typed views; assert the dtype.
  std::span<float> f32();
  std::span<const float> f32() const;
  std::span<int32_t> i32();
  std::span<const int32_t> i32() const;
  std::span<uint8_t> b8();
  std::span<const uint8_t> b8() const;

  /// `f32[2,3]`
  std::string typeStr() const;

  static Tensor fromF32(std::vector<int64_t> shape, const std::vector<float> &values);
  /// An f32[] holding v (a step's learning rate, step number, loss scale).
  static Tensor scalar(float v) { return fromF32({}, {v}); }
  static Tensor fromI32(std::vector<int64_t> shape, const std::vector<int32_t> &values);
  static Tensor fromBool(std::vector<int64_t> shape, const std::vector<uint8_t> &values);

private:
  ir::DType dtype_ = ir::DType::F32;
  std::vector<int64_t> shape_;
  int64_t numel_ = 0;
  std::vector<std::byte> bytes_; ///< the buffer when owned; empty for a view
  std::byte *data_ = nullptr;    ///< bytes_.data(), or the viewed memory
  size_t byteSize_ = 0;
};

/// Index of the first NaN or infinity of an f32 tensor; nullopt when every
/// element is finite (and for i32 and bool tensors, which cannot hold one).
/// Tests the exponent bits, so it vectorises and is not affected by
/// -ffast-math-style assumptions.
std::optional<int64_t> firstNonFinite(const Tensor &t);

} // namespace kiln::runtime
