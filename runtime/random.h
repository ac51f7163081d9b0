//===- runtime/random.h - the seeded generator of the runtime ---*- C++ -*-===//
//
// SplitMix64: tiny, fast, and the same sequence on every platform and
// standard library (std::mt19937 is portable but its distributions are not),
// so a seed reproduces initial weights, splits and batch orders anywhere.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cmath>
#include <cstdint>

namespace kiln::runtime {

class SplitMix64 {
public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, bound): draws below 2^64 mod bound are rejected, since
  /// a plain `next() % bound` would favour small values.
  uint64_t below(uint64_t bound) {
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
      uint64_t r = next();
      if (r >= threshold) return r % bound;
    }
  }
  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

private:
  uint64_t state_;
};

/// The 53 random bits of dropout's draw for element `index` of op `key` at
/// training step `step` of a run seeded `seed`: a counter-based draw (one
/// SplitMix64 finalisation of the four mixed together), so any element's
/// mask is known without generating the others, and the forward and
/// backward of a step, a resumed run and every backend agree.
inline uint64_t dropoutBits(uint64_t seed, int64_t key, int64_t step, int64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(key) * 0xD1B54A32D192ED03ull ^
               static_cast<uint64_t>(step) * 0x8CB92BA72F3D8DD7ull ^ static_cast<uint64_t>(index);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z >> 11;
}

/// An element is kept when its bits, as a fraction of 2^53, are at least p:
/// bits >= ceil(p 2^53) (exact: p 2^53 only moves the exponent), so that
/// kernels compare integers.
inline uint64_t dropoutThreshold(double p) { return static_cast<uint64_t>(std::ceil(p * 0x1.0p53)); }

/// Whether dropout keeps element `index` (see dropoutBits) with drop probability p.
inline bool dropoutKeeps(uint64_t seed, int64_t key, int64_t step, int64_t index, double p) {
  return dropoutBits(seed, key, step, index) >= dropoutThreshold(p);
}

} // namespace kiln::runtime
