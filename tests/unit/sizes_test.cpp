//===- tests/unit/sizes_test.cpp - checked size arithmetic ----------------===//
//
// ir/types.h: element counts and byte sizes that overflow int64 or exceed
// kMaxTensorBytes are refused, never wrapped; Tensor and the memory planner
// rely on it.
//
//===----------------------------------------------------------------------===//
#include "ir/diagnostic.h"
#include "ir/types.h"
#include "runtime/tensor.h"

#include <doctest/doctest.h>

using namespace kiln;
using ir::DType;

TEST_CASE("checkedTensorBytes multiplies without wrapping") {
  CHECK(ir::checkedTensorBytes(DType::F32, {}) == 4);
  CHECK(ir::checkedTensorBytes(DType::F32, {2, 3}) == 24);
  CHECK(ir::checkedTensorBytes(DType::Bool, {7}) == 7);
  // 2^32 * 2^32 is 0 modulo 2^64: the case that used to make a 0-byte buffer.
  CHECK_FALSE(ir::checkedTensorBytes(DType::I32, {int64_t(1) << 32, int64_t(1) << 32}));
  // Exactly at the limit, and one element past it.
  CHECK(ir::checkedTensorBytes(DType::F32, {ir::kMaxTensorBytes / 4}) == ir::kMaxTensorBytes);
  CHECK_FALSE(ir::checkedTensorBytes(DType::F32, {ir::kMaxTensorBytes / 4 + 1}));
  // A zero extent anywhere makes the tensor empty, whatever the others are.
  CHECK(ir::checkedTensorBytes(DType::F32, {int64_t(1) << 62, 0, int64_t(1) << 62}) == 0);
  CHECK_FALSE(ir::checkedTensorBytes(DType::F32, {-1, 2}));
}

TEST_CASE("numElements and Tensor refuse sizes that would wrap") {
  CHECK(ir::numElements({3, 4}) == 12);
  CHECK_THROWS_AS(ir::numElements({int64_t(1) << 32, int64_t(1) << 32}), Error);
  CHECK_THROWS_WITH_AS(runtime::Tensor(DType::F32, {int64_t(1) << 40, 1 << 10}),
                       "a tensor would be f32[1099511627776,1024], 4.0 PiB; one tensor is limited to 128.0 TiB", Error);
  runtime::Tensor empty(DType::F32, {0, int64_t(1) << 62});
  CHECK(empty.numel() == 0);
  CHECK(empty.byteSize() == 0);
}

TEST_CASE("typeTooLarge checks the constant dims, symbols as 1") {
  ir::TensorType t{DType::F32, {ir::Dim::named("B"), ir::Dim::constant(int64_t(1) << 40), ir::Dim::constant(1 << 10)}};
  auto msg = ir::typeTooLarge("x", t);
  REQUIRE(msg);
  CHECK(*msg == "x would be f32[B,1099511627776,1024], 4.0 PiB before its symbols; one tensor is limited to 128.0 TiB");
  CHECK_FALSE(ir::typeTooLarge("x", {DType::F32, {ir::Dim::named("B"), ir::Dim::constant(128)}}));
}

TEST_CASE("bytesStr names sizes beyond int64") {
  CHECK(ir::bytesStr(512) == "512 B");
  CHECK(ir::bytesStr(1536) == "1.5 KiB");
  CHECK(ir::bytesStr(3.0 * (int64_t(1) << 30)) == "3.0 GiB");
  CHECK(ir::bytesStr(1e30) == "827180.6 YiB");
}
