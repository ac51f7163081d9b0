//===- backends/kernels/kernels.cpp - CPU kernels oneDNN has no primitive for -===//
//
// See kernels.h. Parallel loops split the outermost independent dimension;
// the scatter-add of embeddingGrad splits the table's columns instead, so no
// two threads ever add into the same element and the order of additions (and
// so the result) does not depend on the thread count.
//
//===----------------------------------------------------------------------===//
#include "backends/kernels/kernels.h"
#include "backends/kernels/vector.h"

#include "runtime/random.h"

#include <algorithm>
#include <cmath>
#include <vector>
#include <cstring>
#include "backends/kernels/parallel.h"

namespace kiln::backends::kernels {

namespace {
/// Below this many elements a loop runs on one thread.
constexpr int64_t kParallelMin = 1 << 15;
} // namespace

void embedding(const float *table, const int32_t *ids, int64_t n, int64_t width, float *out) {
  parallelFor(n, n * width > kParallelMin, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      std::memcpy(out + i * width, table + int64_t(ids[i]) * width, width * sizeof(float));
  });
}

void embeddingGrad(const int32_t *ids, const float *dy, int64_t n, int64_t rows, int64_t width, float *out) {
  std::memset(out, 0, static_cast<size_t>(rows * width) * sizeof(float));
  // Each thread owns a range of columns, so that rows of repeated ids
  // never race.
  parallelFor(width, n * width > kParallelMin, [&](int64_t begin, int64_t end) {
    for (int64_t i = 0; i < n; ++i) {
      float *row = out + int64_t(ids[i]) * width;
      const float *src = dy + i * width;
      for (int64_t c = begin; c < end; ++c) row[c] += src[c];
    }
  });
}

void maskedReduce(const float *x, const uint8_t *mask, int64_t outer, int64_t len, int64_t inner, bool mean,
                  float *out) {
  parallelFor(outer, outer * len * inner > kParallelMin, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      float *dst = out + o * inner;
      for (int64_t c = 0; c < inner; ++c) dst[c] = 0.0f;
      int64_t count = 0;
      for (int64_t j = 0; j < len; ++j) {
        if (mask && !mask[o * len + j]) continue;
        ++count;
        const float *src = x + (o * len + j) * inner;
        for (int64_t c = 0; c < inner; ++c) dst[c] += src[c];
      }
      if (mean && count > 0) {
        float scale = 1.0f / static_cast<float>(count);
        for (int64_t c = 0; c < inner; ++c) dst[c] *= scale;
      }
    }
  });
}

void maskedMax(const float *x, const uint8_t *mask, int64_t outer, int64_t len, int64_t inner, float *out) {
  parallelFor(outer, outer * len * inner > kParallelMin, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      float *dst = out + o * inner;
      for (int64_t c = 0; c < inner; ++c) dst[c] = 0.0f;
      bool first = true;
      for (int64_t j = 0; j < len; ++j) {
        if (mask && !mask[o * len + j]) continue;
        const float *src = x + (o * len + j) * inner;
        // The reference's rule, element by element: the first kept value,
        // then any larger one or a NaN (which then stays).
        for (int64_t c = 0; c < inner; ++c) {
          float v = src[c];
          dst[c] = first || v > dst[c] || v != v ? v : dst[c];
        }
        first = false;
      }
    }
  });
}

void maskedMaxGrad(const float *x, const float *dy, const uint8_t *mask, int64_t outer, int64_t len, int64_t inner,
                   float *dx) {
  parallelFor(outer, outer * len * inner > kParallelMin, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      std::vector<int64_t> best(static_cast<size_t>(inner), -1);
      for (int64_t j = 0; j < len; ++j) {
        float *dst = dx + (o * len + j) * inner;
        for (int64_t c = 0; c < inner; ++c) dst[c] = 0.0f;
        if (mask && !mask[o * len + j]) continue;
        const float *src = x + (o * len + j) * inner;
        for (int64_t c = 0; c < inner; ++c) {
          int64_t b = best[static_cast<size_t>(c)];
          float v = src[c], was = b < 0 ? 0.0f : x[(o * len + b) * inner + c];
          if (b < 0 || v > was || (v != v && was == was)) best[static_cast<size_t>(c)] = j;
        }
      }
      for (int64_t c = 0; c < inner; ++c)
        if (int64_t b = best[static_cast<size_t>(c)]; b >= 0) dx[(o * len + b) * inner + c] = dy[o * inner + c];
    }
  });
}

namespace {
/// One thread's part of dropout; cloned for AVX-512 and AVX2, where the
/// 64-bit mixing of dropoutBits vectorises (baseline x86-64 has no 64-bit
/// vector multiply, and the loop ran at ~1 element per ns).
KILN_VECTOR_CLONES void dropoutRange(const float *x, int64_t begin, int64_t end, uint64_t seed, int64_t key,
                                     int64_t step, int64_t first, uint64_t threshold, float scale, float *y) {
  for (int64_t i = begin; i < end; ++i)
    y[i] = runtime::dropoutBits(seed, key, step, first + i) >= threshold ? x[i] * scale : 0.0f;
}
} // namespace

void dropout(const float *x, int64_t n, uint64_t seed, int64_t key, int64_t step, double p, float *y,
             const int32_t *batchRows, int64_t rowSize) {
  uint64_t threshold = runtime::dropoutThreshold(p);
  float scale = static_cast<float>(1.0 / (1.0 - p));
  if (batchRows && rowSize > 0) {
    // Row r's elements draw from row batchRows[r]'s indices: an offset of
    // (batchRows[r] - r) rows from their own.
    parallelFor(n / rowSize, n > kParallelMin, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        dropoutRange(x, r * rowSize, (r + 1) * rowSize, seed, key, step, (batchRows[r] - r) * rowSize, threshold,
                     scale, y);
    });
    return;
  }
  int64_t chunk = 1 << 14, chunks = (n + chunk - 1) / chunk;
  parallelFor(chunks, n > kParallelMin, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      dropoutRange(x, c * chunk, std::min(n, (c + 1) * chunk), seed, key, step, 0, threshold, scale, y);
  });
}

void maskedReduceGrad(const float *dy, const uint8_t *mask, int64_t outer, int64_t len, int64_t inner, bool mean,
                      float *dx) {
  parallelFor(outer, outer * len * inner > kParallelMin, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      int64_t count = 0;
      for (int64_t j = 0; j < len; ++j) count += !mask || mask[o * len + j];
      float scale = mean && count > 0 ? 1.0f / static_cast<float>(count) : 1.0f;
      const float *g = dy + o * inner;
      for (int64_t j = 0; j < len; ++j) {
        float *dst = dx + (o * len + j) * inner;
        bool kept = !mask || mask[o * len + j];
        for (int64_t c = 0; c < inner; ++c) dst[c] = kept ? g[c] * scale : 0.0f;
      }
    }
  });
}

void maskedSoftmax(const float *x, const uint8_t *mask, const int64_t *maskRow, int64_t maskStride, int64_t outer,
                   int64_t len, int64_t inner, bool log, float *out) {
  const float masked = log ? -INFINITY : 0.0f;
  parallelFor(outer, outer * len * inner > kParallelMin, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const uint8_t *m = mask ? mask + maskRow[o] : nullptr;
      auto kept = [&](int64_t j) { return !m || m[j * maskStride]; };
      for (int64_t c = 0; c < inner; ++c) {
        const float *src = x + o * len * inner + c;
        float *dst = out + o * len * inner + c;
        float mx = -INFINITY;
        bool any = false;
        for (int64_t j = 0; j < len; ++j)
          if (kept(j)) {
            mx = std::max(mx, src[j * inner]);
            any = true;
          }
        if (!any) {
          for (int64_t j = 0; j < len; ++j) dst[j * inner] = masked;
          continue;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < len; ++j) {
          float e = kept(j) ? std::exp(src[j * inner] - mx) : 0.0f;
          dst[j * inner] = e;
          sum += e;
        }
        if (log) {
          float shift = mx + std::log(sum);
          for (int64_t j = 0; j < len; ++j) dst[j * inner] = kept(j) ? src[j * inner] - shift : masked;
        } else {
          float scale = 1.0f / sum;
          for (int64_t j = 0; j < len; ++j) dst[j * inner] *= scale;
        }
      }
    }
  });
}

void normalizeGrad(const float *y, const float *dy, const uint8_t *mask, const int64_t *maskRow, int64_t maskStride,
                   int64_t outer, int64_t len, int64_t inner, bool log, float *dx) {
  parallelFor(outer, outer * len * inner > kParallelMin, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const uint8_t *m = mask ? mask + maskRow[o] : nullptr;
      auto kept = [&](int64_t j) { return !m || m[j * maskStride]; };
      for (int64_t c = 0; c < inner; ++c) {
        int64_t base = o * len * inner + c;
        double dot = 0; // as the reference sums: in double
        for (int64_t j = 0; j < len; ++j)
          if (kept(j)) dot += log ? double(dy[base + j * inner]) : double(y[base + j * inner]) * dy[base + j * inner];
        for (int64_t j = 0; j < len; ++j) {
          int64_t i = base + j * inner;
          if (!kept(j)) dx[i] = 0.0f;
          else if (log) dx[i] = static_cast<float>(dy[i] - std::exp(double(y[i])) * dot);
          else dx[i] = static_cast<float>(y[i] * (dy[i] - dot));
        }
      }
    }
  });
}

void columnSums(const float *x, int64_t rows, int64_t cols, float *out) {
  // Each thread sums a block of columns over all rows: rows stay contiguous
  // in the inner loop and no partial sums need merging.
  for (int64_t c = 0; c < cols; ++c) out[c] = 0.0f;
  parallelFor(cols, rows * cols > kParallelMin, [&](int64_t begin, int64_t end) {
    for (int64_t r = 0; r < rows; ++r) {
      const float *src = x + r * cols;
      for (int64_t c = begin; c < end; ++c) out[c] += src[c];
    }
  });
}

void adamMoment(const float *m, const float *g, int64_t n, float beta, bool square, float *out) {
  float rest = 1.0f - beta;
  if (square) {
    parallelFor(n, n > kParallelMin, [&](int64_t begin, int64_t end) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) out[i] = beta * m[i] + rest * (g[i] * g[i]);
    });
  } else {
    parallelFor(n, n > kParallelMin, [&](int64_t begin, int64_t end) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) out[i] = beta * m[i] + rest * g[i];
    });
  }
}

void adamUpdate(const float *p, const float *m, const float *v, int64_t n, float stepSize, float bc2Sqrt, float eps,
                float *out) {
  parallelFor(n, n > kParallelMin, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) out[i] = p[i] - stepSize * (m[i] / (std::sqrt(v[i]) / bc2Sqrt + eps));
  });
}

void adamStep(const float *p, const float *m, const float *v, const float *g, int64_t n, float beta1, float beta2,
              float stepSize, float bc2Sqrt, float eps, float *pOut, float *mOut, float *vOut) {
  float rest1 = 1.0f - beta1, rest2 = 1.0f - beta2;
  parallelFor(n, n > kParallelMin, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      float mi = beta1 * m[i] + rest1 * g[i];
      float vi = beta2 * v[i] + rest2 * (g[i] * g[i]);
      mOut[i] = mi;
      vOut[i] = vi;
      pOut[i] = p[i] - stepSize * (mi / (std::sqrt(vi) / bc2Sqrt + eps));
    }
  });
}

void adamRows(const float *p, const float *m, const float *v, const int32_t *ids, const float *dy, int64_t n,
              int64_t rows, int64_t width, float beta1, float beta2, float stepSize, float bc2Sqrt, float eps,
              float weightDecay, float *pOut, float *mOut, float *vOut) {
  size_t tableBytes = static_cast<size_t>(rows * width) * sizeof(float);
  if (pOut != p) std::memcpy(pOut, p, tableBytes);
  if (mOut != m) std::memcpy(mOut, m, tableBytes);
  if (vOut != v) std::memcpy(vOut, v, tableBytes);
  // Positions grouped by id, each group in position order (a stable sort),
  // so that a row's gradient adds its dy rows in the order embeddingGrad
  // does and the result does not depend on the thread count.
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  std::vector<int64_t> groupStart;
  for (int64_t k = 0; k < n; ++k)
    if (k == 0 || ids[order[static_cast<size_t>(k)]] != ids[order[static_cast<size_t>(k - 1)]]) groupStart.push_back(k);
  int64_t groups = static_cast<int64_t>(groupStart.size());
  groupStart.push_back(n);
  float rest1 = 1.0f - beta1, rest2 = 1.0f - beta2;
  parallelFor(groups, n * width > kParallelMin, [&](int64_t begin, int64_t end) {
    std::vector<float> g(static_cast<size_t>(width));
    for (int64_t k = begin; k < end; ++k) {
      int64_t first = groupStart[static_cast<size_t>(k)], last = groupStart[static_cast<size_t>(k + 1)];
      int64_t row = ids[order[static_cast<size_t>(first)]];
      std::fill(g.begin(), g.end(), 0.0f);
      for (int64_t j = first; j < last; ++j) {
        const float *src = dy + order[static_cast<size_t>(j)] * width;
        for (int64_t c = 0; c < width; ++c) g[static_cast<size_t>(c)] += src[c];
      }
      const float *pr = p + row * width, *mr = m + row * width, *vr = v + row * width;
      float *po = pOut + row * width, *mo = mOut + row * width, *vo = vOut + row * width;
      for (int64_t c = 0; c < width; ++c) {
        float gc = g[static_cast<size_t>(c)];
        if (weightDecay != 0.0f) gc = gc + pr[c] * weightDecay;
        float mi = beta1 * mr[c] + rest1 * gc;
        float vi = beta2 * vr[c] + rest2 * (gc * gc);
        mo[c] = mi;
        vo[c] = vi;
        po[c] = pr[c] - stepSize * (mi / (std::sqrt(vi) / bc2Sqrt + eps));
      }
    }
  });
}

} // namespace kiln::backends::kernels
