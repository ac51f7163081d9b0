//===- runtime/metrics.h - classification metrics ---------------*- C++ -*-===//
//
// A confusion matrix accumulated over predictions, and what is derived from
// it: accuracy, per-class precision / recall / F1 and support, macro-F1 (the
// unweighted mean of per-class F1, with F1 = 0 for a class that is never
// predicted and never present, matching scikit-learn's zero_division=0), and
// a plain-text report for `kiln eval`.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::runtime {

class ConfusionMatrix {
public:
  explicit ConfusionMatrix(size_t classes) : n_(classes), counts_(classes * classes, 0) {}

  /// Records one example; labels outside [0, classes) are an assertion failure.
  void add(int32_t truth, int32_t predicted);
  /// `times` examples of truth `truth` predicted as `predicted`.
  void add(int32_t truth, int32_t predicted, int64_t times);
  size_t classes() const { return n_; }
  int64_t count(size_t truth, size_t predicted) const { return counts_[truth * n_ + predicted]; }
  int64_t total() const;

  double accuracy() const;
  double precision(size_t c) const;
  double recall(size_t c) const;
  double f1(size_t c) const;
  int64_t support(size_t c) const;
  double macroF1() const;

  /// Per-class precision/recall/F1/support table, accuracy and macro-F1,
  /// then the confusion matrix with rows = truth, columns = prediction.
  std::string report(const std::vector<std::string> &labelNames) const;

private:
  size_t n_;
  std::vector<int64_t> counts_;
};

} // namespace kiln::runtime
