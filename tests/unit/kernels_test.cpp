//===- tests/unit/kernels_test.cpp - the vector helpers of kiln's kernels -===//
//
// fastExp and its 16-lane twin against std::exp: within 2 ulp over the
// range where e^x is a normal float, exactly 0 below it and for -inf (the
// masked scores of attention), fastTanh within 2e-7 of std::tanh, and the
// row helpers against plain loops on lengths that are and are not multiples
// of 16.
//
//===----------------------------------------------------------------------===//
#include "backends/kernels/vector.h"

#include <cmath>
#include <doctest/doctest.h>
#include <limits>
#include <random>
#include <vector>

using namespace kiln::backends::kernels;

namespace {
/// The distance in units in the last place between two positive floats.
int64_t ulps(float a, float b) {
  int32_t ia = std::bit_cast<int32_t>(a), ib = std::bit_cast<int32_t>(b);
  return std::abs(static_cast<int64_t>(ia) - ib);
}
} // namespace

TEST_CASE("kernels: fastExp is within 2 ulp of std::exp where e^x is normal, and 0 below") {
  int64_t worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
    float want = std::exp(x), got = fastExp(x);
    worst = std::max(worst, ulps(got, want));
  }
  CHECK(worst <= 2);
  CHECK(fastExp(0.0f) == 1.0f);
  CHECK(fastExp(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(fastExp(-100.0f) == 0.0f);
  CHECK(fastExp(88.5f) > 1e38f);
  // The 16-lane version computes the same values, lane by lane.
  float xs[16];
  for (int l = 0; l < 16; ++l) xs[l] = -90.0f + 11.3f * l;
  xs[3] = -std::numeric_limits<float>::infinity();
  F32x16 v = fastExp16(load16(xs));
  for (int l = 0; l < 16; ++l) CHECK(v[l] == fastExp(xs[l]));
}

TEST_CASE("kernels: row helpers agree with plain loops on every length") {
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 3.0f);
  for (int64_t n : {0, 1, 15, 16, 17, 33, 128, 131}) {
    CAPTURE(n);
    std::vector<float> a(n), b(n);
    for (auto &x : a) x = d(rng);
    for (auto &x : b) x = d(rng);
    float mx = -std::numeric_limits<float>::infinity(), dot = 0;
    for (int64_t j = 0; j < n; ++j) {
      mx = std::max(mx, a[j]);
      dot += a[j] * b[j];
    }
    CHECK(rowMax(a.data(), n) == mx);
    CHECK(rowDot(a.data(), b.data(), n) == doctest::Approx(dot).epsilon(1e-5));
    std::vector<float> e = a;
    float sum = expShiftedSum(e.data(), n, mx), want = 0;
    for (int64_t j = 0; j < n; ++j) {
      CHECK(e[j] == doctest::Approx(std::exp(a[j] - mx)).epsilon(1e-6));
      want += std::exp(a[j] - mx);
    }
    CHECK(sum == doctest::Approx(want).epsilon(1e-5));
  }
}

TEST_CASE("kernels: fastTanh is within 2e-7 of std::tanh, exactly +-1 far out, and its 16 lanes agree") {
  float worst = 0;
  for (float x = -12.0f; x <= 12.0f; x += 0.00123f) worst = std::max(worst, std::abs(fastTanh(x) - std::tanh(x)));
  CHECK(worst <= 2e-7f);
  CHECK(fastTanh(0.0f) == 0.0f);
  CHECK(fastTanh(50.0f) == 1.0f);
  CHECK(fastTanh(-std::numeric_limits<float>::infinity()) == -1.0f);
  float xs[16];
  for (int l = 0; l < 16; ++l) xs[l] = -10.0f + 1.3f * static_cast<float>(l);
  F32x16 v = fastTanh16(load16(xs));
  for (int l = 0; l < 16; ++l) CHECK(v[l] == fastTanh(xs[l]));
}

TEST_CASE("kernels: fastErf16 is within 5e-7 of std::erf, odd, and exactly +-1 far out") {
  float worst = 0;
  float xs[16];
  for (float start = -7.0f; start <= 7.0f; start += 16 * 0.00077f) {
    for (int l = 0; l < 16; ++l) xs[l] = start + 0.00077f * static_cast<float>(l);
    F32x16 v = fastErf16(load16(xs));
    for (int l = 0; l < 16; ++l) worst = std::max(worst, std::abs(v[l] - std::erf(xs[l])));
  }
  CHECK(worst <= 5e-7f);
  for (int l = 0; l < 16; ++l) xs[l] = l < 8 ? 0.37f * static_cast<float>(l) : -0.37f * static_cast<float>(l - 8);
  F32x16 v = fastErf16(load16(xs));
  for (int l = 1; l < 8; ++l) CHECK(v[l] == -v[l + 8]);
  CHECK(v[0] == 0.0f);
  xs[0] = 100.0f, xs[1] = -std::numeric_limits<float>::infinity();
  v = fastErf16(load16(xs));
  CHECK(v[0] == 1.0f);
  CHECK(v[1] == -1.0f);
}
