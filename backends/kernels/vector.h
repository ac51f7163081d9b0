//===- backends/kernels/vector.h - vector helpers of kiln's kernels -*- C++ -*-===//
//
// Included only by the kernel sources (kernels.cpp, attention_kernels.cpp),
// which are built with -Wno-psabi: GCC warns that a 64-byte vector type
// passed by value has another ABI without AVX-512, which cannot matter for
// functions that are always inlined.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <bit>
#include <cstdint>

namespace kiln::backends::kernels {

/// The hot loops of the kernels are built for AVX-512, AVX2 and baseline
/// x86-64, picked at load time for the CPU (GCC function multiversioning):
/// kiln is built for baseline x86-64, and these loops are 4 to 16 times
/// faster in the wider vectors. (By feature, not arch=: an arch= clone runs
/// only on exactly that CPU model.) Put on functions called from inside an
/// OpenMP region (the region's own outlined body is not cloned).
/// Not in the LLVM bitcode of the kernels (KILN_KERNEL_BITCODE): there
/// each plan compiles them for the host CPU itself.
#ifdef KILN_KERNEL_BITCODE
#define KILN_VECTOR_CLONES
#else
#define KILN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

/// e^x in f32 without a call, so that loops over it vectorise (glibc's expf
/// does not without -ffast-math): x = n ln2 + r, |r| <= ln2/2, e^r by the
/// Cephes polynomial, 2^n put into the exponent bits. Within 2 ulp of
/// std::exp over the normal range (tests/unit/kernels_test.cpp); 0 below
/// -87.3 (where e^x is subnormal) and for -inf, as masked scores need.
[[gnu::always_inline]] inline float fastExp(float x) {
  float clamped = x > 88.3762626647949f ? 88.3762626647949f : x < -88.0f ? -88.0f : x;
  // n = floor(t) by truncation and a correction (floorf itself is a call
  // on baseline x86-64, which would stop the vectoriser).
  float t = clamped * 1.44269504088896341f + 0.5f;
  int32_t ni = static_cast<int32_t>(t);
  ni -= static_cast<float>(ni) > t ? 1 : 0;
  float n = static_cast<float>(ni);
  float r = clamped - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float e = p * r * r + r + 1.0f;
  int32_t bits = (ni + 127) << 23;
  float scaled = e * std::bit_cast<float>(bits < 0 ? 0 : bits);
  return x < -87.3365447505531f ? 0.0f : scaled;
}

// Row loops over 16 floats at a time in GCC vector types: explicit, so
// they are vector code in every clone (an AVX-512 register, two AVX2 or four
// SSE ones), where GCC's auto-vectoriser gives up on fastExp's selects and
// on float reductions it may not reorder.
using F32x16 = float __attribute__((vector_size(64)));
using I32x16 = int32_t __attribute__((vector_size(64)));
constexpr int kLanes = 16;

[[gnu::always_inline]] inline F32x16 load16(const float *p) {
  F32x16 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
[[gnu::always_inline]] inline void store16(float *p, F32x16 v) { __builtin_memcpy(p, &v, sizeof v); }
[[gnu::always_inline]] inline F32x16 splat16(float x) { return F32x16{} + x; }

/// The steps of fastExp on 16 lanes of a clamped argument c: n =
/// floor(c / ln2 + 1/2) into ni, and e^r for r = c - n ln2.
[[gnu::always_inline]] inline F32x16 expReduced16(F32x16 c, I32x16 &ni) {
  F32x16 t = c * 1.44269504088896341f + 0.5f;
  ni = __builtin_convertvector(t, I32x16);
  ni += (__builtin_convertvector(ni, F32x16) > t); // a true comparison is -1: floor
  F32x16 n = __builtin_convertvector(ni, F32x16);
  F32x16 r = c - n * 0.693359375f + n * 2.12194440e-4f;
  F32x16 p = splat16(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  F32x16 e = p * r * r + r + 1.0f;
  return e;
}

/// fastExp on 16 lanes: the same steps, as vector operations.
[[gnu::always_inline]] inline F32x16 fastExp16(F32x16 x) {
  F32x16 hi = splat16(88.3762626647949f), lo = splat16(-88.0f);
  F32x16 c = x > hi ? hi : x;
  c = c < lo ? lo : c;
  I32x16 ni;
  F32x16 e = expReduced16(c, ni);
  I32x16 bits = (ni + 127) << 23; // ni >= -127: the clamp keeps the exponent in range
  F32x16 scaled = e * __builtin_bit_cast(F32x16, bits);
  return x < splat16(-87.3365447505531f) ? splat16(0.0f) : scaled;
}

/// e^x over the whole f32 range, for the exp op itself (fastExp16 serves
/// softmax's e^(x - max) <= 1 and the clamped arguments of tanh and
/// sigmoid): +inf above ln(FLT_MAX), and 2^n applied as two factors so
/// that n up to 128 (x up to 88.72) stays finite; 0 below -87.3 as
/// fastExp16; NaN stays NaN.
[[gnu::always_inline]] inline F32x16 fastExpFull16(F32x16 x) {
  F32x16 hi = splat16(88.72283935546875f), lo = splat16(-88.0f);
  F32x16 c = x > hi ? hi : x;
  c = c < lo ? lo : c;
  I32x16 ni;
  F32x16 e = expReduced16(c, ni);
  I32x16 half = ni >> 1, rest = ni - half; // each in [-64, 64]
  F32x16 scaled = e * __builtin_bit_cast(F32x16, (half + 127) << 23) * __builtin_bit_cast(F32x16, (rest + 127) << 23);
  scaled = x < splat16(-87.3365447505531f) ? splat16(0.0f) : scaled;
  return x > hi ? splat16(__builtin_inff()) : scaled;
}

/// tanh(x) = 1 - 2 / (e^(2x) + 1) from fastExp16: within 2e-7 of
/// std::tanh (absolute; tests/unit/kernels_test.cpp); x is clamped to
/// [-10, 10], beyond which tanh is +-1 in f32 (as it is from |x| = 9.01).
[[gnu::always_inline]] inline F32x16 fastTanh16(F32x16 x) {
  F32x16 c = x > 10.0f ? splat16(10.0f) : x;
  c = c < -10.0f ? splat16(-10.0f) : c;
  return 1.0f - 2.0f / (fastExp16(c + c) + 1.0f);
}

/// erf on 16 lanes: Abramowitz and Stegun 7.1.26, 1 - poly(t) e^(-x^2) with
/// t = 1 / (1 + p |x|), odd in x; within 5e-7 of std::erf (the formula 1.5e-7,
/// the rest f32 rounding)
/// (tests/unit/kernels_test.cpp), where glibc's erff does not vectorise.
[[gnu::always_inline]] inline F32x16 fastErf16(F32x16 x) {
  F32x16 a = x < 0.0f ? -x : x;
  a = a > 6.0f ? splat16(6.0f) : a; // erf is 1 to f32 precision beyond
  F32x16 t = 1.0f / (1.0f + 0.3275911f * a);
  F32x16 poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  F32x16 y = 1.0f - poly * fastExp16(-(a * a));
  return x < 0.0f ? -y : y;
}

[[gnu::always_inline]] inline float fastTanh(float x) {
  float c = x > 10.0f ? 10.0f : x < -10.0f ? -10.0f : x;
  return 1.0f - 2.0f / (fastExp(c + c) + 1.0f);
}

[[gnu::always_inline]] inline float sum16(F32x16 v) {
  float s = 0;
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}

/// The largest of x[0..n), -inf for n = 0.
[[gnu::always_inline]] inline float rowMax(const float *x, int64_t n) {
  F32x16 acc = splat16(-__builtin_inff());
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    F32x16 v = load16(x + j);
    acc = v > acc ? v : acc;
  }
  float m = -__builtin_inff();
  for (int l = 0; l < kLanes; ++l) m = acc[l] > m ? acc[l] : m;
  for (; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

/// x[j] = e^(x[j] - shift) in place; returns their sum.
[[gnu::always_inline]] inline float expShiftedSum(float *x, int64_t n, float shift) {
  F32x16 acc{};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    F32x16 e = fastExp16(load16(x + j) - shift);
    store16(x + j, e);
    acc += e;
  }
  float sum = sum16(acc);
  for (; j < n; ++j) {
    float e = fastExp(x[j] - shift);
    x[j] = e;
    sum += e;
  }
  return sum;
}

/// The dot product of a[0..n) and b[0..n).
[[gnu::always_inline]] inline float rowDot(const float *a, const float *b, int64_t n) {
  F32x16 acc{};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) acc += load16(a + j) * load16(b + j);
  float sum = sum16(acc);
  for (; j < n; ++j) sum += a[j] * b[j];
  return sum;
}

} // namespace kiln::backends::kernels
