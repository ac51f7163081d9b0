//===- tools/report_page.cpp - the page of a training run -----------------===//
//
// The page is drawn from a MetricsLog alone (runtime/metrics_log.h): plots
// as inline SVG with their own axes, ticks and legends, laid out with inline
// CSS. Nothing on it is fetched: no script, font, image or link, so it opens
// the same from a mail attachment, an air-gapped machine or a CI artifact.
// It needs nothing but the runtime (tests/fuzz/fuzz_metrics.cpp draws the
// page of every log the fuzzer finds readable).
//
// Large runs stay small pages: a polyline with more points than twice its
// width in pixels keeps, per pixel column, the lowest and highest point
// (the envelope a browser would draw anyway); a confusion matrix of more
// than kMaxMatrix labels is listed as its largest confusions instead.
//
//===----------------------------------------------------------------------===//
#include "tools/report_page.h"

#include "runtime/output_guard.h"
#include "runtime/utf8.h"
#include "tools/html.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <optional>

namespace kiln::tools {

namespace {

using runtime::EpochRecord;
using runtime::MetricsLog;
using runtime::StepRecord;

// --- numbers and text ------------------------------------------------------------

/// The shortest text that reads back as `v` (for data-* attributes).
std::string exact(double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

/// A pixel coordinate: 2 decimals, which the page's readers (and
/// tests/lit/report.test) take as the precision of every plotted point.
std::string pixel(double v) { return fmt::format("{:.2f}", v); }

std::string fixed4(double v) { return fmt::format("{:.4f}", v); }

/// 1234567 as "1,234,567".
std::string grouped(double v) {
  std::string digits = fmt::format("{:.0f}", std::abs(v));
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (v < 0 ? "-" : "") + out;
}

std::string seconds(double s) {
  if (s < 1) return fmt::format("{:.0f} ms", s * 1000);
  if (s < 60) return fmt::format("{:.1f} s", s);
  // Beyond a year, as a number: the log is text, and 1e75 s does not fit
  // the integer below (tests/fuzz/regressions/metrics/).
  if (s >= 3.2e7) return fmt::format("{:.3g} s", s);
  auto whole = static_cast<int64_t>(s + 0.5);
  if (whole < 3600) return fmt::format("{}:{:02} min", whole / 60, whole % 60);
  return fmt::format("{}:{:02}:{:02} h", whole / 3600, whole / 60 % 60, whole % 60);
}

/// `text` cut to `max` characters (code points) with "…", escaped; the
/// whole text goes into the element's <title> where it is cut.
std::string shortText(const std::string &text, size_t max) {
  size_t pos = 0, count = 0;
  while (pos < text.size() && count < max) {
    pos += std::max<size_t>(1, utf8::decodeAt(text, pos).length);
    ++count;
  }
  if (pos >= text.size()) return html::escape(text);
  return html::escape(text.substr(0, pos)) + "\u2026";
}

/// Characters in `text` (code points), for estimating its width.
size_t characters(const std::string &text) {
  size_t count = 0;
  for (size_t pos = 0; pos < text.size(); pos += std::max<size_t>(1, utf8::decodeAt(text, pos).length)) ++count;
  return count;
}

/// Estimated width in pixels of 12px text: the page cannot measure it.
double textWidth(size_t chars) { return 6.8 * static_cast<double>(chars); }

// --- axes ----------------------------------------------------------------------

struct Axis {
  double lo = 0, hi = 1; ///< the domain drawn
  std::vector<double> ticks;
  double step = 1; ///< between ticks
};

/// An axis over [lo, hi] extended to round ticks (steps of 1, 2 or 5 times
/// a power of ten, about `target` of them); `integers` keeps the step whole.
Axis niceAxis(double lo, double hi, int target, bool integers) {
  if (!(hi > lo)) {
    double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  Axis a;
  double raw = (hi - lo) / target;
  if (!std::isfinite(raw) || raw <= 0) { // values near the limits of double: two ticks
    a.lo = lo;
    a.hi = hi;
    a.ticks = {lo, hi};
    a.step = hi - lo;
    return a;
  }
  double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double f = raw / magnitude;
  a.step = magnitude * (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10);
  if (integers) a.step = std::max(1.0, std::round(a.step));
  if (!(a.step > 0) || !std::isfinite(a.step)) { // a range of a few denormals
    a.lo = lo;
    a.hi = hi;
    a.ticks = {lo, hi};
    a.step = hi - lo;
    return a;
  }
  double k0 = std::floor(lo / a.step + 1e-9), k1 = std::ceil(hi / a.step - 1e-9);
  a.lo = k0 * a.step;
  a.hi = k1 * a.step;
  for (double k = k0; k <= k1 && a.ticks.size() < 64; ++k) a.ticks.push_back(k * a.step);
  return a;
}

/// A tick's label, with as many decimals as the tick step needs.
std::string tickLabel(double v, double step) {
  if (std::abs(v) < step * 1e-6) v = 0; // -0 and rounding residue
  int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  if (decimals > 5 || std::abs(v) >= 1e7) return fmt::format("{:.3g}", v);
  return fmt::format("{:.{}f}", v, decimals);
}

// --- charts --------------------------------------------------------------------

struct Point {
  double x, y;
};

struct LegendItem {
  std::string label, color;
  enum Shape { Line, Faint, Dashed } shape = Line;
};

/// One plot: a frame of `width` x `height` pixels, the data area inside its
/// margins, axes with ticks, grid and labels, and what is drawn on it.
class Chart {
public:
  Chart(double width, double height, Axis x, Axis y) : width_(width), height_(height), x_(std::move(x)), y_(std::move(y)) {
    // Room for the widest tick label and the turned axis title beside it.
    size_t widest = 0;
    for (double t : y_.ticks) widest = std::max(widest, tickLabel(t, y_.step).size());
    left_ = std::max(66.0, std::ceil(34 + textWidth(widest) + 8));
    // Room for half the last x tick label, centred on the right edge.
    double lastTick = x_.ticks.empty() ? 0 : textWidth(tickLabel(x_.ticks.back(), x_.step).size()) / 2;
    right_ = width - std::max(18.0, std::ceil(lastTick + 4));
    top_ = 34;
    bottom_ = height - 44;
  }
  double px(double v) const { return left_ + (v - x_.lo) * (right_ - left_) / (x_.hi - x_.lo); }
  double py(double v) const { return bottom_ - (v - y_.lo) * (bottom_ - top_) / (y_.hi - y_.lo); }
  double left() const { return left_; }
  double right() const { return right_; }
  double top() const { return top_; }
  double bottom() const { return bottom_; }

  /// The mapping of an axis, "d0 d1 p0 p1", for data-x and data-y.
  std::string xMapping() const { return fmt::format("{} {} {} {}", exact(x_.lo), exact(x_.hi), exact(left_), exact(right_)); }
  std::string yMapping() const { return fmt::format("{} {} {} {}", exact(y_.lo), exact(y_.hi), exact(bottom_), exact(top_)); }

  /// Grid, axes, tick labels and the axis titles.
  void frame(const std::string &xTitle, const std::string &yTitle, bool xIntegers = false) {
    body_ += "<g class=\"grid\">";
    for (double t : y_.ticks)
      body_ += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>", pixel(left_), pixel(right_),
                           pixel(py(t)), pixel(py(t)));
    body_ += "</g><g class=\"axis\">";
    body_ += fmt::format("<line x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\"/>", pixel(left_), pixel(top_), pixel(bottom_));
    body_ += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\"/>", pixel(left_), pixel(right_), pixel(bottom_));
    for (double t : y_.ticks) {
      body_ += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\"/>", pixel(left_ - 4), pixel(left_), pixel(py(t)));
      body_ += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", pixel(left_ - 7),
                           pixel(py(t) + 4), tickLabel(t, y_.step));
    }
    for (double t : x_.ticks) {
      if (t < x_.lo || t > x_.hi) continue;
      body_ += fmt::format("<line x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\"/>", pixel(px(t)), pixel(bottom_),
                           pixel(bottom_ + 4));
      body_ += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>", pixel(px(t)),
                           pixel(bottom_ + 18), xIntegers ? fmt::format("{:.0f}", t) : tickLabel(t, x_.step));
    }
    body_ += "</g>";
    body_ += fmt::format("<text class=\"title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                         pixel((left_ + right_) / 2), pixel(height_ - 8), html::escape(xTitle));
    body_ += fmt::format("<text class=\"title\" transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
                         pixel((top_ + bottom_) / 2), html::escape(yTitle));
  }

  /// A legend in the top margin, right-aligned.
  void legend(const std::vector<LegendItem> &items) {
    double widthNeeded = 0;
    for (const LegendItem &i : items) widthNeeded += 28 + textWidth(characters(i.label)) + 16;
    double x = std::max(left_ - 50, right_ - widthNeeded + 16), y = 14;
    body_ += "<g class=\"legend\">";
    for (const LegendItem &i : items) {
      switch (i.shape) {
      default:
        body_ += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"{3}\" stroke-width=\"{4}\"{5}/>",
                             pixel(x), pixel(x + 22), pixel(y), i.color,
                             i.shape == LegendItem::Faint ? "1.5" : i.shape == LegendItem::Dashed ? "1.6" : "2.5",
                             i.shape == LegendItem::Faint    ? " stroke-opacity=\"0.35\""
                             : i.shape == LegendItem::Dashed ? " stroke-dasharray=\"4 3\""
                                                             : "");
      }
      body_ += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>", pixel(x + 28), pixel(y + 4), html::escape(i.label));
      x += 28 + textWidth(characters(i.label)) + 16;
    }
    body_ += "</g>";
  }

  void add(const std::string &svg) { body_ += svg; }

  std::string svg(const std::string &label) const {
    return fmt::format("<svg viewBox=\"0 0 {0} {1}\" width=\"{0}\" height=\"{1}\" role=\"img\" aria-label=\"{2}\">{3}</svg>",
                       exact(width_), exact(height_), html::escape(label), body_);
  }

private:
  double width_, height_;
  Axis x_, y_;
  double left_, right_, top_, bottom_;
  std::string body_;
};

/// Pixel points for a polyline; more than two per pixel column keep each
/// column's lowest and highest (in their order), which draws the same.
std::vector<Point> thinned(const std::vector<Point> &points, double width, bool *thinnedOut = nullptr) {
  if (points.size() <= static_cast<size_t>(2 * std::max(width, 1.0))) return points;
  if (thinnedOut) *thinnedOut = true;
  std::vector<Point> out;
  size_t i = 0;
  while (i < points.size()) {
    double column = std::floor(points[i].x);
    size_t lo = i, hi = i, j = i + 1; // a point whose x is not a number is a column of its own
    for (; j < points.size() && std::floor(points[j].x) == column; ++j) {
      if (points[j].y > points[lo].y) lo = j; // pixel y grows downwards
      if (points[j].y < points[hi].y) hi = j;
    }
    out.push_back(points[std::min(lo, hi)]);
    if (lo != hi) out.push_back(points[std::max(lo, hi)]);
    i = j;
  }
  return out;
}

std::string pointsText(const std::vector<Point> &points) {
  std::string out;
  for (const Point &p : points) out += (out.empty() ? "" : " ") + pixel(p.x) + "," + pixel(p.y);
  return out;
}

/// Runs of consecutive steps: a line is not drawn across steps the log lacks.
std::vector<std::vector<const StepRecord *>> stepRuns(const std::vector<StepRecord> &steps) {
  std::vector<std::vector<const StepRecord *>> runs;
  for (const StepRecord &s : steps) {
    if (runs.empty() || runs.back().back()->step + 1 != s.step) runs.emplace_back();
    runs.back().push_back(&s);
  }
  return runs;
}

/// The half-width of the centred moving average for `n` steps: about 2%
/// of the run on each side, at most 100 steps.
int64_t smoothingHalfWindow(size_t n) { return std::min<int64_t>(100, static_cast<int64_t>(std::llround(n / 50.0))); }

/// The centred moving average of each point over `half` points either side
/// (fewer at the ends of a run).
std::vector<double> movingAverage(const std::vector<double> &v, int64_t half) {
  std::vector<double> prefix(v.size() + 1, 0.0), out(v.size());
  for (size_t i = 0; i < v.size(); ++i) prefix[i + 1] = prefix[i] + v[i];
  for (size_t i = 0; i < v.size(); ++i) {
    size_t a = static_cast<size_t>(std::max<int64_t>(0, static_cast<int64_t>(i) - half));
    size_t b = std::min(v.size(), i + static_cast<size_t>(half) + 1);
    out[i] = (prefix[b] - prefix[a]) / static_cast<double>(b - a);
  }
  return out;
}

/// The first step of each epoch after the first that the steps show.
std::vector<std::pair<int64_t, int64_t>> epochStarts(const std::vector<StepRecord> &steps) {
  std::vector<std::pair<int64_t, int64_t>> starts; // (epoch, its first step)
  for (size_t i = 1; i < steps.size(); ++i)
    if (steps[i].epoch != steps[i - 1].epoch) starts.push_back({steps[i].epoch, steps[i].step});
  return starts;
}

/// Dashed lines between epochs, labelled where there is room.
void epochBoundaries(Chart &c, const std::vector<StepRecord> &steps) {
  double lastLabel = -1e9;
  c.add("<g class=\"epochs\">");
  for (auto [epoch, first] : epochStarts(steps)) {
    double x = c.px(static_cast<double>(first) - 0.5);
    c.add(fmt::format("<line class=\"epoch-boundary\" data-epoch=\"{0}\" x1=\"{1}\" x2=\"{1}\" y1=\"{2}\" y2=\"{3}\"/>",
                      epoch, pixel(x), pixel(c.top()), pixel(c.bottom())));
    std::string label = fmt::format("epoch {}", epoch);
    if (x - lastLabel > textWidth(label.size()) + 10 && x + 4 + textWidth(label.size()) < c.right() + 10) {
      c.add(fmt::format("<text class=\"epoch-label\" x=\"{}\" y=\"{}\">{}</text>", pixel(x + 4), pixel(c.top() + 12),
                        label));
      lastLabel = x;
    }
  }
  c.add("</g>");
}

constexpr const char *kBlue = "#2563a8";
constexpr const char *kOrange = "#e07b1a";
constexpr const char *kGreen = "#2e8b57";
constexpr const char *kPurple = "#7b4fb0";
constexpr const char *kRed = "#c0392b";
constexpr const char *kGrey = "#8a93a3";

/// The x axis of the step plots: from step 0 to the run's planned last
/// step while it runs, to the step it ended at once it has (early stopping
/// ends long before the plan).
Axis stepAxis(const MetricsLog &log) {
  double last = static_cast<double>(log.end ? log.steps.back().step : std::max(log.steps.back().step, log.last().totalSteps));
  double first = static_cast<double>(log.steps.front().step);
  // A log that starts late (a run resumed into a new DIR) starts its axis there.
  double lo = first > last / 2 ? first - 1 : 0;
  // Ticks at round steps, the axis ending at the run's last step.
  Axis a = niceAxis(lo, last, 8, true);
  a.lo = lo;
  a.hi = last > lo ? last : lo + 1;
  std::erase_if(a.ticks, [&](double t) { return t < a.lo || t > a.hi; });
  return a;
}

std::string stepLossChart(const MetricsLog &log) {
  double top = 0;
  for (const StepRecord &s : log.steps) top = std::max(top, s.loss);
  double bottom = 0;
  for (const StepRecord &s : log.steps) bottom = std::min(bottom, s.loss); // a loss is never negative, but the file is text
  Chart c(960, 340, stepAxis(log), niceAxis(bottom, top, 6, false));
  c.frame("step", "cross-entropy loss");
  epochBoundaries(c, log.steps);
  int64_t half = smoothingHalfWindow(log.steps.size());
  std::string raw, smooth;
  bool thinnedAny = false;
  for (const auto &run : stepRuns(log.steps)) {
    std::vector<Point> points;
    std::vector<double> losses;
    for (const StepRecord *s : run) {
      points.push_back({c.px(static_cast<double>(s->step)), c.py(s->loss)});
      losses.push_back(s->loss);
    }
    std::vector<double> mean = movingAverage(losses, half);
    std::vector<Point> meanPoints;
    for (size_t i = 0; i < run.size(); ++i) meanPoints.push_back({points[i].x, c.py(mean[i])});
    double width = c.right() - c.left();
    raw += fmt::format("<polyline class=\"raw\" points=\"{}\"/>", pointsText(thinned(points, width, &thinnedAny)));
    smooth += fmt::format("<polyline class=\"smooth\" points=\"{}\"/>", pointsText(thinned(meanPoints, width)));
  }
  // The raw line carries the mapping back to data (see report.h).
  c.add(fmt::format("<g class=\"loss\" data-x=\"{}\" data-y=\"{}\" data-window=\"{}\" data-thinned=\"{}\">{}{}</g>",
                    c.xMapping(), c.yMapping(), 2 * half + 1, thinnedAny ? "true" : "false", raw, smooth));
  std::string meanLabel = half == 0 ? "smoothed (no smoothing: few steps)" : fmt::format("mean of {} steps", 2 * half + 1);
  std::vector<LegendItem> legend = {{"loss per step", kBlue, LegendItem::Faint}, {meanLabel, kBlue, LegendItem::Line}};
  if (!epochStarts(log.steps).empty()) legend.push_back({"epoch boundary", kGrey, LegendItem::Dashed});
  c.legend(legend);
  return c.svg("training loss per step");
}

std::string learningRateChart(const MetricsLog &log) {
  double top = 0;
  for (const StepRecord &s : log.steps) top = std::max(top, s.lr);
  Chart c(960, 240, stepAxis(log), niceAxis(0, top, 4, false));
  c.frame("step", "learning rate");
  epochBoundaries(c, log.steps);
  std::string lines;
  for (const auto &run : stepRuns(log.steps)) {
    std::vector<Point> points;
    for (const StepRecord *s : run) points.push_back({c.px(static_cast<double>(s->step)), c.py(s->lr)});
    lines += fmt::format("<polyline class=\"line\" stroke=\"{}\" points=\"{}\"/>", kRed,
                         pointsText(thinned(points, c.right() - c.left())));
  }
  c.add(lines);
  c.legend({{"learning rate of the step", kRed, LegendItem::Line}});
  return c.svg("learning rate per step");
}

/// One series of a per-epoch chart.
struct Series {
  std::string name, color;
  std::vector<Point> values; ///< (epoch, value)
  bool dashed = false;       ///< drawn over another series that may hide it
};

std::string epochChart(const std::vector<Series> &series, const std::string &yTitle, double yLo, double yHi,
                       int64_t lastEpoch, std::optional<int64_t> selected, const std::string &label) {
  Axis x = niceAxis(1, static_cast<double>(std::max<int64_t>(lastEpoch, 1)), 6, true);
  x.lo = 0.5;
  x.hi = static_cast<double>(std::max<int64_t>(lastEpoch, 1)) + 0.5;
  std::erase_if(x.ticks, [&](double t) { return t < 1 || t > x.hi; });
  Chart c(470, 300, x, niceAxis(yLo, yHi, 5, false));
  c.frame("epoch", yTitle, true);
  std::vector<LegendItem> legend;
  if (selected) {
    double sx = c.px(static_cast<double>(*selected));
    c.add(fmt::format("<line class=\"selected\" x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\"/>", pixel(sx),
                      pixel(c.top()), pixel(c.bottom())));
  }
  for (const Series &s : series) {
    if (s.values.empty()) continue;
    std::vector<Point> points;
    for (const Point &p : s.values) points.push_back({c.px(p.x), c.py(p.y)});
    std::string g = fmt::format("<g class=\"series\" data-series=\"{}\" data-x=\"{}\" data-y=\"{}\">", html::escape(s.name),
                                c.xMapping(), c.yMapping());
    if (points.size() > 1)
      g += fmt::format("<polyline class=\"line\" stroke=\"{}\"{} points=\"{}\"/>", s.color,
                       s.dashed ? " stroke-dasharray=\"6 4\"" : "", pointsText(points));
    // A dashed series has the smaller markers, so that equal values show both.
    for (size_t i = 0; i < points.size(); ++i)
      g += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{}\"><title>epoch {:.0f}: {} {}</title></circle>",
                       pixel(points[i].x), pixel(points[i].y), (s.dashed ? 2.5 : 4.5) * (points.size() > 25 ? 0.6 : 1),
                       s.color, s.values[i].x,
                       html::escape(s.name), fixed4(s.values[i].y));
    c.add(g + "</g>");
    legend.push_back({s.name, s.color, s.dashed ? LegendItem::Dashed : LegendItem::Line});
  }
  if (selected) legend.push_back({"selected", kGrey, LegendItem::Dashed});
  c.legend(legend);
  return c.svg(label);
}

/// The mean loss of each epoch's steps, weighted by their examples (what
/// train prints as the epoch's train loss), from the steps the log has.
std::map<int64_t, double> epochTrainLoss(const std::vector<StepRecord> &steps) {
  std::map<int64_t, std::pair<double, double>> sums;
  for (const StepRecord &s : steps) {
    auto &[loss, examples] = sums[s.epoch];
    double weight = static_cast<double>(std::max<int64_t>(s.examples, 1));
    loss += s.loss * weight;
    examples += weight;
  }
  std::map<int64_t, double> out;
  for (auto &[epoch, sum] : sums) out[epoch] = sum.first / sum.second;
  return out;
}

std::optional<int64_t> selectedEpoch(const MetricsLog &log) {
  auto it = log.last().recipe.find("select_by");
  if (it == log.last().recipe.end() || it->second == "none") return std::nullopt;
  std::optional<int64_t> best;
  for (const EpochRecord &e : log.epochs)
    if (e.best) best = e.epoch;
  return best;
}

/// Labels beyond this many are listed as their largest confusions.
constexpr size_t kMaxMatrix = 40;

std::string confusionChart(const EpochRecord &e) {
  size_t n = e.labels.size();
  std::vector<int64_t> rowTotal(n, 0);
  for (size_t t = 0; t < n; ++t)
    for (size_t p = 0; p < n; ++p) rowTotal[t] += e.confusion[t][p];
  if (n > kMaxMatrix) {
    // Too many to draw legibly: the largest off-diagonal counts.
    struct Cell {
      int64_t count;
      size_t t, p;
    };
    std::vector<Cell> cells;
    for (size_t t = 0; t < n; ++t)
      for (size_t p = 0; p < n; ++p)
        if (t != p && e.confusion[t][p] > 0) cells.push_back({e.confusion[t][p], t, p});
    std::stable_sort(cells.begin(), cells.end(), [](const Cell &a, const Cell &b) { return a.count > b.count; });
    if (cells.size() > 30) cells.resize(30);
    std::string out = fmt::format("<p class=\"note\">{} labels are too many to draw; the {} largest confusions:</p>"
                                  "<table class=\"confusions\"><tr><th class=\"text\">true label</th><th class=\"text\">predicted</th><th>count</th>"
                                  "<th>of the true label</th></tr>",
                                  n, cells.size());
    for (const Cell &c : cells)
      out += fmt::format("<tr><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td>{:.1f}%</td></tr>",
                         html::escape(e.labels[c.t]), html::escape(e.labels[c.p]), c.count,
                         100.0 * static_cast<double>(c.count) / static_cast<double>(std::max<int64_t>(rowTotal[c.t], 1)));
    return out + "</table>";
  }
  double cell = std::clamp(420.0 / static_cast<double>(std::max<size_t>(n, 1)), 22.0, 64.0);
  size_t longest = 0;
  for (const std::string &l : e.labels) longest = std::max(longest, std::min<size_t>(characters(l), 20));
  double labelWidth = textWidth(longest) + 14;
  // Column labels are turned when they are wider than their column.
  bool turned = textWidth(longest) > cell - 4;
  double left = 34 + labelWidth, top = 40 + (turned ? labelWidth * 0.75 : 18);
  // A turned label leans right of its column by up to its width / sqrt(2).
  double width = left + cell * static_cast<double>(n) + (turned ? labelWidth * 0.72 : 20);
  double height = top + cell * static_cast<double>(n) + 16;
  std::string out = fmt::format("<svg class=\"confusion\" viewBox=\"0 0 {0} {1}\" width=\"{0}\" height=\"{1}\" role=\"img\" "
                                "aria-label=\"validation confusion matrix\">",
                                exact(std::ceil(width)), exact(std::ceil(height)));
  out += fmt::format("<text class=\"title\" x=\"{}\" y=\"14\" text-anchor=\"middle\">predicted label</text>",
                     pixel(left + cell * static_cast<double>(n) / 2));
  out += fmt::format("<text class=\"title\" transform=\"translate(14 {}) rotate(-90)\" text-anchor=\"middle\">true label</text>",
                     pixel(top + cell * static_cast<double>(n) / 2));
  int fontSize = cell < 30 ? 10 : 12;
  for (size_t i = 0; i < n; ++i) {
    double centre = static_cast<double>(i) * cell + cell / 2;
    std::string name = shortText(e.labels[i], 20), full = html::escape(e.labels[i]);
    out += fmt::format("<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\"><title>{}</title>{}</text>",
                       pixel(left - 8), pixel(top + centre + 4), full, name);
    if (turned)
      out += fmt::format("<text class=\"label\" transform=\"translate({} {}) rotate(-45)\"><title>{}</title>{}</text>",
                         pixel(left + centre + 4), pixel(top - 6), full, name);
    else
      out += fmt::format("<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\"><title>{}</title>{}</text>",
                         pixel(left + centre), pixel(top - 8), full, name);
  }
  for (size_t t = 0; t < n; ++t)
    for (size_t p = 0; p < n; ++p) {
      int64_t count = e.confusion[t][p];
      double share = rowTotal[t] > 0 ? static_cast<double>(count) / static_cast<double>(rowTotal[t]) : 0;
      // White to kiln blue by the share of the true label's examples.
      auto mix = [&](int from, int to) { return static_cast<int>(std::lround(from + (to - from) * share)); };
      std::string fill = fmt::format("#{:02x}{:02x}{:02x}", mix(0xf5, 0x1d), mix(0xf8, 0x4e), mix(0xfc, 0x89));
      double x = left + static_cast<double>(p) * cell, y = top + static_cast<double>(t) * cell;
      out += fmt::format("<g class=\"cell\" data-true=\"{}\" data-predicted=\"{}\" data-count=\"{}\">"
                         "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>"
                         "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" style=\"font-size:{}px;fill:{}\">{}</text>"
                         "<title>true {}, predicted {}: {} ({:.1f}% of {})</title></g>",
                         t, p, count, pixel(x), pixel(y), pixel(cell - 1), pixel(cell - 1), fill, pixel(x + cell / 2 - 0.5),
                         pixel(y + cell / 2 + fontSize * 0.35), fontSize, share > 0.55 ? "#ffffff" : "#1d2330", count,
                         html::escape(e.labels[t]), html::escape(e.labels[p]), count, 100 * share,
                         html::escape(e.labels[t]));
    }
  return out + "</svg>";
}

// --- the page --------------------------------------------------------------------

constexpr const char *kStyle = R"(
:root{color-scheme:light}
*{box-sizing:border-box}
body{margin:0;background:#f4f5f8;color:#1d2330;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","DejaVu Sans",Arial,sans-serif}
main{max-width:1040px;margin:0 auto;padding:28px 24px 40px}
header h1{font-size:22px;margin:0;font-weight:650}
header h1 .model{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"DejaVu Sans Mono",monospace;font-weight:500;font-size:19px;color:#2563a8;word-break:break-all}
.status{margin:8px 0 0;padding:8px 12px;border-radius:6px;background:#e8f3ec;color:#1e5b3a}
.status.stopped{background:#fdf4e3;color:#7a4b00}
.status.error{background:#fbeaea;color:#8f1d1d}
.status.open{background:#e9eef7;color:#27406b}
.note{color:#5b6475;margin:6px 0 0}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin:18px 0}
.stat{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:10px 14px}
.stat .k{color:#5b6475;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.stat .v{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums;white-space:nowrap}
.stat .s{color:#5b6475;font-size:12px}
section.card{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:14px 16px 10px;margin:0 0 16px;overflow-x:auto}
section.card h2{font-size:15px;margin:0 0 2px;font-weight:600}
section.card p.what{color:#5b6475;margin:0 0 6px;font-size:13px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.grid2>section.card{margin:0 0 16px}
@media (max-width:900px){.grid2{grid-template-columns:1fr}}
svg{display:block;max-width:100%;height:auto;margin:0 auto}
svg text{font-size:12px;fill:#3b4252}
svg text.tick{fill:#5b6475;font-variant-numeric:tabular-nums}
svg text.title{fill:#1d2330;font-weight:600}
svg .grid line{stroke:#eceff4}
svg .axis line{stroke:#9aa3b2}
svg polyline{fill:none;stroke-linejoin:round;stroke-linecap:round}
svg .raw{stroke:#2563a8;stroke-opacity:.35;stroke-width:1.2}
svg .smooth{stroke:#2563a8;stroke-width:2.5}
svg .line{stroke-width:2.2}
svg .epoch-boundary{stroke:#8a93a3;stroke-dasharray:4 3}
svg .epoch-label{fill:#6b7280;font-size:11px}
svg .selected{stroke:#8a93a3;stroke-dasharray:4 3}
svg.confusion text.label{fill:#1d2330}
svg.confusion .cell rect{stroke:#fff}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;width:100%}
th,td{padding:5px 10px;text-align:right;border-bottom:1px solid #eef0f3;white-space:nowrap}
th{color:#5b6475;font-weight:600;font-size:12px}
td.text,th.text{text-align:left;white-space:normal;word-break:break-word}
tr.best td{background:#f2f7ee}
dl.recipe{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:2px 20px;margin:6px 0 0}
dl.recipe div{display:flex;justify-content:space-between;gap:10px;border-bottom:1px solid #f0f1f4;padding:3px 0}
dl.recipe dt{color:#5b6475}
dl.recipe dd{margin:0;font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:13px;word-break:break-all;text-align:right}
footer{color:#8a93a3;font-size:12px;margin-top:8px}
)";

std::string stat(const std::string &key, const std::string &value, const std::string &sub = "") {
  return fmt::format("<div class=\"stat\"><div class=\"k\">{}</div><div class=\"v\">{}</div>{}</div>", key, value,
                     sub.empty() ? "" : "<div class=\"s\">" + sub + "</div>");
}

std::string card(const std::string &title, const std::string &what, const std::string &body) {
  return fmt::format("<section class=\"card\"><h2>{}</h2>{}{}</section>\n", title,
                     what.empty() ? "" : "<p class=\"what\">" + what + "</p>", body);
}

/// The status line: how the run ended, or that it has not (yet).
std::string statusLine(const MetricsLog &log) {
  const runtime::RunRecord &run = log.last();
  int64_t step = log.steps.empty() ? run.startStep : log.steps.back().step;
  if (!log.end)
    return fmt::format("<p class=\"status open\">In progress, or killed: the log ends after step {} of {} "
                       "(no end record).</p>",
                       step, run.totalSteps);
  const runtime::EndRecord &end = *log.end;
  if (end.status == "finished")
    return fmt::format("<p class=\"status\">Finished: {} epoch{}, {} steps.</p>", end.epoch, end.epoch == 1 ? "" : "s",
                       end.step);
  std::string cls = end.status == "stopped" ? "stopped" : "error";
  return fmt::format("<p class=\"status {}\">{} after step {} of {}: {}</p>", cls,
                     end.status == "stopped" ? "Stopped" : "Ended with an error", end.step, run.totalSteps,
                     html::escape(end.message));
}

std::string runNotes(const MetricsLog &log) {
  std::string out;
  const runtime::RunRecord &first = log.runs.front();
  if (!first.resumedFrom.empty() && first.startStep > 0)
    out += fmt::format("<p class=\"note\">The log starts with a run resumed at step {} from {}; the steps before it "
                       "are not in this log.</p>",
                       first.startStep, html::escape(first.resumedFrom));
  for (size_t i = 1; i < log.runs.size(); ++i) {
    const runtime::RunRecord &r = log.runs[i];
    out += fmt::format("<p class=\"note\">Resumed at step {} (epoch {}, batch {}) from {}, {}.</p>", r.startStep,
                       r.startEpoch + 1, r.startBatch, html::escape(r.resumedFrom), html::escape(r.started));
  }
  if (log.earlierRuns)
    out += "<p class=\"note\">The log also holds earlier runs in the same directory; this page shows the last.</p>";
  return out;
}

std::string epochTable(const MetricsLog &log, const std::map<int64_t, double> &trainLoss,
                       std::optional<int64_t> selected) {
  std::string out = "<table><tr><th>epoch</th><th>last step</th><th>train loss</th><th>train accuracy</th>"
                    "<th>valid loss</th><th>accuracy</th><th>macro-F1</th><th>tokens/s</th><th>time</th>"
                    "<th class=\"text\">notes</th></tr>";
  double previousScale = 1;
  for (const EpochRecord &e : log.epochs) {
    std::vector<std::string> notes;
    if (selected && *selected == e.epoch) notes.push_back("selected");
    if (e.partial) notes.push_back("resumed mid-epoch: time, rate and train accuracy are of the resumed part");
    if (e.lrScale != previousScale) notes.push_back(fmt::format("learning rate x{:.4g}", e.lrScale));
    previousScale = e.lrScale;
    auto loss = trainLoss.find(e.epoch);
    std::string joined;
    for (const std::string &n : notes) joined += (joined.empty() ? "" : "; ") + n;
    out += fmt::format("<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                       "<td>{}</td><td class=\"text\">{}</td></tr>",
                       selected && *selected == e.epoch ? " class=\"best\"" : "", e.epoch, e.step,
                       loss == trainLoss.end() ? "" : fixed4(loss->second), fixed4(e.trainAccuracy),
                       e.validated ? fixed4(e.validLoss) : "", e.validated ? fixed4(e.accuracy) : "",
                       e.validated ? fixed4(e.macroF1) : "",
                       e.seconds > 0 ? grouped(static_cast<double>(e.tokens) / e.seconds) : "", seconds(e.seconds),
                       html::escape(joined));
  }
  return out + "</table>";
}

std::string recipeList(const runtime::RunRecord &run) {
  std::string out = "<dl class=\"recipe\">";
  auto item = [&](const std::string &k, const std::string &v) {
    out += fmt::format("<div><dt>{}</dt><dd>{}</dd></div>", html::escape(k), html::escape(v));
  };
  item("parameters", grouped(static_cast<double>(run.parameters)));
  item("training examples", grouped(static_cast<double>(run.trainExamples)));
  item("validation examples", grouped(static_cast<double>(run.validExamples)));
  item("batches per epoch", std::to_string(run.batchesPerEpoch));
  std::string labels;
  for (size_t i = 0; i < run.labels.size() && i < 12; ++i) labels += (i ? ", " : "") + run.labels[i];
  if (run.labels.size() > 12) labels += fmt::format(", ... ({} in all)", run.labels.size());
  item("labels", labels);
  for (const auto &[k, v] : run.recipe) item(k, v.empty() ? "-" : v);
  item("started", run.started);
  return out + "</dl>";
}

} // namespace

std::string reportPage(const MetricsLog &log) {
  const runtime::RunRecord &run = log.last();
  std::string title = run.model.empty() ? "a kiln model" : run.model;
  std::string page = fmt::format("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n{}\n"
                                 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                                 "<title>kiln training report: {}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n",
                                 runtime::kPageMark, html::escape(title), kStyle);
  page += fmt::format("<header><h1>Training report <span class=\"model\">{}</span></h1>\n{}\n{}</header>\n",
                      html::escape(title), statusLine(log), runNotes(log));

  std::optional<int64_t> selected = selectedEpoch(log);
  const EpochRecord *lastValid = nullptr, *shown = nullptr;
  double trainSeconds = 0;
  int64_t trainTokens = 0;
  for (const EpochRecord &e : log.epochs) {
    if (e.validated) lastValid = &e;
    if (e.validated && selected && *selected == e.epoch) shown = &e;
    trainSeconds += e.seconds;
    trainTokens += e.tokens;
  }
  if (!shown) shown = lastValid;

  // The numbers at a glance.
  page += "<div class=\"stats\">";
  int64_t lastStep = log.steps.empty() ? run.startStep : log.steps.back().step;
  page += stat("steps", grouped(static_cast<double>(lastStep)),
               fmt::format("of {}, {} per epoch", grouped(static_cast<double>(run.totalSteps)),
                           grouped(static_cast<double>(run.batchesPerEpoch))));
  page += stat("epochs", std::to_string(log.epochs.empty() ? 0 : log.epochs.back().epoch),
               fmt::format("of {}", run.epochs));
  if (shown) {
    std::string which = fmt::format("epoch {}{}", shown->epoch, selected ? ", selected" : "");
    page += stat("valid accuracy", fixed4(shown->accuracy), which);
    page += stat("valid macro-F1", fixed4(shown->macroF1), which);
    page += stat("valid loss", fixed4(shown->validLoss), which);
  }
  if (trainSeconds > 0)
    page += stat("tokens / s", grouped(static_cast<double>(trainTokens) / trainSeconds),
                 "training, " + seconds(trainSeconds) + " in all");
  page += "</div>\n";

  if (log.steps.empty()) {
    page += card("Training loss per step", "", "<p class=\"note\">No step is recorded yet.</p>");
  } else {
    page += card("Training loss per step",
                 "Mean cross-entropy of each step's batch (faint), and its centred moving average; dashed lines "
                 "separate the epochs.",
                 stepLossChart(log));
  }

  std::map<int64_t, double> trainLoss = epochTrainLoss(log.steps);
  if (!log.epochs.empty()) {
    Series train{"train loss", kBlue, {}}, valid{"validation loss", kOrange, {}};
    Series accuracy{"accuracy", kGreen, {}}, macroF1{"macro-F1", kPurple, {}, true};
    double lossTop = 0, lossBottom = 0, scoreLo = 1, scoreHi = 0;
    for (const EpochRecord &e : log.epochs) {
      double x = static_cast<double>(e.epoch);
      if (auto it = trainLoss.find(e.epoch); it != trainLoss.end()) {
        train.values.push_back({x, it->second});
        lossTop = std::max(lossTop, it->second);
        lossBottom = std::min(lossBottom, it->second);
      }
      if (!e.validated) continue;
      valid.values.push_back({x, e.validLoss});
      accuracy.values.push_back({x, e.accuracy});
      macroF1.values.push_back({x, e.macroF1});
      lossTop = std::max(lossTop, e.validLoss);
      lossBottom = std::min(lossBottom, e.validLoss);
      scoreLo = std::min({scoreLo, e.accuracy, e.macroF1});
      scoreHi = std::max({scoreHi, e.accuracy, e.macroF1});
    }
    int64_t lastEpoch = log.epochs.back().epoch;
    std::string left = card("Loss per epoch",
                            valid.values.empty() ? "Training loss (mean over the epoch's steps); the run had no "
                                                   "validation data (--valid-split 0)."
                                                 : "Training loss (mean over the epoch's steps) and validation loss.",
                            epochChart({train, valid}, "cross-entropy loss", lossBottom, lossTop, lastEpoch, selected,
                                       "loss per epoch"));
    if (!valid.values.empty()) {
      // Scores lie in [0, 1]; the axis spans what the run reached.
      double lo = std::max(0.0, scoreLo - 0.02), hi = std::min(1.0, scoreHi + 0.01);
      std::string right = card("Validation accuracy and macro-F1", "On the validation data after each epoch.",
                               epochChart({accuracy, macroF1}, "score", lo, hi, lastEpoch, selected,
                                          "validation accuracy and macro-F1 per epoch"));
      page += "<div class=\"grid2\">" + left + right + "</div>\n";
    } else {
      page += left;
    }
  }

  if (!log.steps.empty())
    page += card("Learning rate per step", "The rate each step used: the schedule, times any plateau decay.",
                 learningRateChart(log));

  if (shown)
    page += card(fmt::format("Validation confusion matrix, epoch {}{}", shown->epoch,
                             selected ? " (the selected model)" : ""),
                 "Rows: the true label; columns: the predicted one. Each cell counts validation examples; its "
                 "shade is the share of its row.",
                 confusionChart(*shown));

  if (!log.epochs.empty()) page += card("Epochs", "", epochTable(log, trainLoss, selected));
  page += card("Run", "", recipeList(run));
  page += "<footer>Drawn by kiln report from the run's metrics.jsonl.</footer>\n</main>\n</body>\n</html>\n";
  return page;
}

} // namespace kiln::tools
