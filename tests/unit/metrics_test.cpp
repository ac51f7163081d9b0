//===- tests/unit/metrics_test.cpp - classification metrics ---------------===//
//
// A 3-class confusion matrix with every metric worked out by hand, classes
// that are never predicted or never present (zero_division=0: the metric is
// 0, not NaN), an empty matrix, and the text of the report: the table rows,
// the accuracy and macro-F1 lines, and the confusion matrix with long label
// names cut short.
//
//===----------------------------------------------------------------------===//
#include "runtime/metrics.h"

#include <cmath>
#include <doctest/doctest.h>
#include <sstream>

using namespace kiln::runtime;

namespace {

doctest::Approx near(double x) { return doctest::Approx(x).epsilon(1e-12); }

/// Adds `n` examples with the given truth and prediction.
void addMany(ConfusionMatrix &m, int32_t truth, int32_t predicted, int n) {
  for (int i = 0; i < n; ++i) m.add(truth, predicted);
}

/// rows = truth, columns = prediction:
///
///              cat  dog  bird   support
///       cat      3    1    0        4
///       dog      2    4    0        6
///       bird     0    2    1        3
///   predicted    5    7    1       13
ConfusionMatrix threeClasses() {
  ConfusionMatrix m(3);
  addMany(m, 0, 0, 3);
  addMany(m, 0, 1, 1);
  addMany(m, 1, 0, 2);
  addMany(m, 1, 1, 4);
  addMany(m, 2, 1, 2);
  addMany(m, 2, 2, 1);
  return m;
}

std::vector<std::string> lines(const std::string &s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

bool hasLine(const std::string &report, const std::string &line) {
  for (const std::string &l : lines(report))
    if (l == line) return true;
  return false;
}

} // namespace

TEST_CASE("metrics: a hand-computed 3-class example") {
  ConfusionMatrix m = threeClasses();
  CHECK(m.classes() == 3);
  CHECK(m.total() == 13);
  CHECK(m.count(1, 0) == 2);
  CHECK(m.count(0, 2) == 0);

  // accuracy = diagonal / total = (3 + 4 + 1) / 13 = 8/13
  CHECK(m.accuracy() == near(8.0 / 13.0));

  // support = row sums
  CHECK(m.support(0) == 4);
  CHECK(m.support(1) == 6);
  CHECK(m.support(2) == 3);

  // cat:  tp 3, predicted 5, support 4
  //   P = 3/5 = 0.6, R = 3/4 = 0.75, F1 = 2*0.6*0.75 / 1.35 = 0.9/1.35 = 2/3
  CHECK(m.precision(0) == near(0.6));
  CHECK(m.recall(0) == near(0.75));
  CHECK(m.f1(0) == near(2.0 / 3.0));

  // dog:  tp 4, predicted 7, support 6
  //   P = 4/7, R = 4/6 = 2/3, F1 = 2*(4/7)(2/3) / (4/7 + 2/3) = (16/21) / (26/21) = 8/13
  CHECK(m.precision(1) == near(4.0 / 7.0));
  CHECK(m.recall(1) == near(2.0 / 3.0));
  CHECK(m.f1(1) == near(8.0 / 13.0));

  // bird: tp 1, predicted 1, support 3
  //   P = 1/1 = 1, R = 1/3, F1 = 2*(1/3) / (4/3) = 1/2
  CHECK(m.precision(2) == near(1.0));
  CHECK(m.recall(2) == near(1.0 / 3.0));
  CHECK(m.f1(2) == near(0.5));

  // macro-F1 = (2/3 + 8/13 + 1/2) / 3 = (52 + 48 + 39) / 78 / 3 = 139/234
  CHECK(m.macroF1() == near(139.0 / 234.0));
}

TEST_CASE("metrics: a class never predicted, or never present, scores 0") {
  // truth 0 -> 0 twice, truth 1 -> 0 once, truth 2 -> 1 once; class 2 is
  // never predicted, class 1 is predicted once but always wrongly.
  ConfusionMatrix m(4);
  addMany(m, 0, 0, 2);
  m.add(1, 0);
  m.add(2, 1);

  // class 2: tp 0, predicted 0 -> P = 0/0 = 0; support 1 -> R = 0/1 = 0; F1 = 0
  CHECK(m.precision(2) == 0.0);
  CHECK(m.recall(2) == 0.0);
  CHECK(m.f1(2) == 0.0);
  // class 1: tp 0, predicted 1 -> P = 0; support 1 -> R = 0; P + R = 0 -> F1 = 0
  CHECK(m.precision(1) == 0.0);
  CHECK(m.f1(1) == 0.0);
  // class 3: never predicted and never present: every ratio is 0/0 = 0
  CHECK(m.precision(3) == 0.0);
  CHECK(m.recall(3) == 0.0);
  CHECK(m.f1(3) == 0.0);
  CHECK(m.support(3) == 0);
  // class 0: tp 2, predicted 3, support 2 -> P = 2/3, R = 1, F1 = 4/5
  CHECK(m.f1(0) == near(0.8));
  // macro-F1 counts the empty classes: (0.8 + 0 + 0 + 0) / 4 = 0.2
  CHECK(m.macroF1() == near(0.2));
  CHECK(m.accuracy() == near(0.5)); // 2 of 4
  for (size_t c = 0; c < 4; ++c) CHECK(!std::isnan(m.f1(c)));
}

TEST_CASE("metrics: an empty matrix gives zeros, not NaN") {
  ConfusionMatrix m(2);
  CHECK(m.total() == 0);
  CHECK(m.accuracy() == 0.0);
  CHECK(m.macroF1() == 0.0);
  CHECK(m.precision(0) == 0.0);
  CHECK(m.recall(1) == 0.0);
  CHECK(!m.report({"a", "b"}).empty());
  CHECK(ConfusionMatrix(0).macroF1() == 0.0);
}

TEST_CASE("metrics: the report's table, summary lines and confusion matrix") {
  std::string r = threeClasses().report({"cat", "dog", "bird"});
  CAPTURE(r);
  // The label column is as wide as "macro-F1"; numbers have 4 decimals in
  // right-aligned columns of 10.
  CHECK(hasLine(r, "label      precision     recall   f1-score    support"));
  CHECK(hasLine(r, "cat           0.6000     0.7500     0.6667          4"));
  CHECK(hasLine(r, "dog           0.5714     0.6667     0.6154          6"));
  CHECK(hasLine(r, "bird          1.0000     0.3333     0.5000          3"));
  CHECK(hasLine(r, "accuracy                            0.6154         13"));
  CHECK(hasLine(r, "macro-F1                            0.5940         13"));
  CHECK(hasLine(r, "true \\ pred   cat   dog  bird"));
  CHECK(hasLine(r, "cat             3     1     0"));
  CHECK(hasLine(r, "dog             2     4     0"));
  CHECK(hasLine(r, "bird            0     2     1"));

  // Table first, then the summary, then the matrix.
  size_t table = r.find("cat  "), acc = r.find("accuracy"), matrix = r.find("true \\ pred");
  CHECK(table < acc);
  CHECK(acc < matrix);
}

TEST_CASE("metrics: long and odd label names in the report") {
  ConfusionMatrix m(2);
  addMany(m, 0, 0, 1000);
  m.add(1, 0);
  // A long name stays whole in the table but is cut in the matrix; a tab
  // would break the layout and is shown as '?'; a multi-byte name is padded
  // by characters, not bytes.
  std::string r = m.report({"a-very-long-label-name", "caf\xc3\xa9\tx"});
  CAPTURE(r);
  CHECK(hasLine(r, "a-very-long-label-name      0.9990     1.0000     0.9995       1000"));
  CHECK(hasLine(r, "true \\ pred   a-very-lon..        caf\xc3\xa9?x"));
  CHECK(hasLine(r, "a-very-lon..          1000             0"));
  CHECK(hasLine(r, "caf\xc3\xa9?x" + std::string(19, ' ') + "1             0"));

  // Fewer names than classes: the rest are shown by index.
  std::string byIndex = threeClasses().report({"cat"});
  CHECK(hasLine(byIndex, "2              0    2    1"));
}
