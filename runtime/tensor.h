//===- runtime/tensor.h - dense host tensors --------------------*- C++ -*-===//
//
// A Tensor is a dtype, concrete extents and a contiguous row-major buffer. It
// is what flows into and out of every backend and what safetensors files
// hold. bool elements are one byte each (0 or 1).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/types.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kiln::runtime {

class Tensor {
public:
  Tensor() = default;
  /// Zero-filled tensor.
  Tensor(ir::DType dtype, std::vector<int64_t> shape);

  ir::DType dtype() const { return dtype_; }
  const std::vector<int64_t> &shape() const { return shape_; }
  size_t rank() const { return shape_.size(); }
  int64_t numel() const { return numel_; }
  size_t byteSize() const { return bytes_.size(); }

  std::byte *raw() { return bytes_.data(); }
  const std::byte *raw() const { return bytes_.data(); }

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
  static Tensor fromI32(std::vector<int64_t> shape, const std::vector<int32_t> &values);
  static Tensor fromBool(std::vector<int64_t> shape, const std::vector<uint8_t> &values);

private:
  ir::DType dtype_ = ir::DType::F32;
  std::vector<int64_t> shape_;
  int64_t numel_ = 0;
  std::vector<std::byte> bytes_;
};

} // namespace kiln::runtime
