//===- tools/explain.cpp - what a prediction attended to, shown -----------===//
//
// See tools/explain.h. The colours are one sequential ramp (white through
// orange to dark red, ColorBrewer's OrRd), each text scaled to its own
// largest weight so that short and long texts both use the whole ramp; the
// exact weight is in each token's tooltip and data-w attribute.
//
//===----------------------------------------------------------------------===//
#include "tools/explain.h"

#include "runtime/output_guard.h"
#include "tools/html.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fmt/format.h>

namespace kiln::tools::explain {

std::vector<Source> sourcesOf(const ir::Graph &g) {
  std::vector<Source> sources;
  for (const ir::Output &o : g.outputs()) {
    if (!o.name.starts_with(passes::kExplainPrefix)) continue;
    const ir::ValueInfo &info = g.value(o.value);
    std::string location;
    if (info.kind == ir::ValueKind::Node) {
      const ir::Node &n = g.nodes()[info.producer];
      if (!n.locs.empty() && n.locs.front().known()) {
        const SourceLoc &l = n.locs.front();
        // "line 20 of classifier_sdpa.kiln (from checkpoint)": the file as
        // the model was compiled from it, without its directory.
        location = fmt::format("line {} of {}", l.line, l.file.substr(l.file.rfind('/') + 1));
      }
    }
    sources.push_back({o.name, info.name.empty() ? o.name.substr(std::string(passes::kExplainPrefix).size()) : info.name,
                       info.type.str(), location, passes::weightsLayout(info.type)});
  }
  return sources;
}

std::string describe(const std::vector<Source> &sources) {
  bool anyQueries = false;
  std::string names;
  for (size_t i = 0; i < sources.size(); ++i) {
    const Source &s = sources[i];
    anyQueries = anyQueries || s.layout == passes::WeightsLayout::QueriesByKeys;
    std::string sep = i == 0 ? "" : i + 1 == sources.size() ? " and " : ", ";
    names += fmt::format("{}{} ({}{}{})", sep, s.value, s.type,
                         s.layout == passes::WeightsLayout::QueriesByKeys ? ", queries x keys" : "",
                         s.location.empty() ? "" : ", " + s.location);
  }
  std::string text = fmt::format("the weight each token receives from {}", names);
  if (anyQueries)
    text += ", averaged over the text's queries (every token's own row of weights) and over the dims between, such "
            "as heads: the mean attention each token receives";
  if (sources.size() > 1) text += fmt::format("; the {} marked values are averaged", sources.size());
  return text;
}

std::vector<double> perTokenWeights(const runtime::Tensor &weights, passes::WeightsLayout layout, size_t tokens) {
  const std::vector<int64_t> &shape = weights.shape();
  auto wrongShape = [&] {
    return Error(fmt::format("explain: the weights are {}; expected one text of at least {} tokens", weights.typeStr(),
                             tokens));
  };
  if (weights.dtype() != ir::DType::F32 || shape.size() < 2 || shape[0] != 1) throw wrongShape();
  auto x = weights.f32();
  std::vector<double> out(tokens, 0.0);
  if (layout == passes::WeightsLayout::PerToken) {
    if (static_cast<size_t>(shape[1]) < tokens || weights.numel() != shape[1]) throw wrongShape();
    for (size_t t = 0; t < tokens; ++t) out[t] = x[t];
    return out;
  }
  size_t r = shape.size();
  auto length = static_cast<size_t>(shape[r - 1]);
  if (static_cast<size_t>(shape[r - 2]) != length || length < tokens || tokens == 0) throw wrongShape();
  size_t slices = weights.numel() / (length * length);
  // Each real query's row, over every slice (head): their mean.
  for (size_t s = 0; s < slices; ++s)
    for (size_t q = 0; q < tokens; ++q) {
      const float *row = x.data() + (s * length + q) * length;
      for (size_t t = 0; t < tokens; ++t) out[t] += row[t];
    }
  for (double &w : out) w /= static_cast<double>(slices * tokens);
  return out;
}

namespace {

/// Each token's share of the text's largest weight, in [0, 1].
std::vector<double> relative(const std::vector<double> &weights) {
  double top = 0;
  for (double w : weights) top = std::max(top, w);
  std::vector<double> out;
  for (double w : weights) out.push_back(top > 0 && std::isfinite(w) ? std::clamp(w / top, 0.0, 1.0) : 0.0);
  return out;
}

struct Rgb {
  int r, g, b;
};

/// ColorBrewer OrRd: white to dark red, interpolated.
Rgb heat(double f) {
  static constexpr std::array<Rgb, 6> ramp{{{255, 255, 255}, {254, 232, 200}, {253, 187, 132},
                                            {252, 141, 89}, {227, 74, 51}, {179, 0, 0}}};
  double at = std::clamp(f, 0.0, 1.0) * (ramp.size() - 1);
  size_t i = std::min(static_cast<size_t>(at), ramp.size() - 2);
  double u = at - static_cast<double>(i);
  auto mix = [&](int a, int b) { return static_cast<int>(std::lround(a + (b - a) * u)); };
  return {mix(ramp[i].r, ramp[i + 1].r), mix(ramp[i].g, ramp[i + 1].g), mix(ramp[i].b, ramp[i + 1].b)};
}

/// The ramp in xterm's 256 colours (the 6x6x6 cube), light to dark.
constexpr std::array<int, 8> kTerminalRamp{231, 230, 223, 216, 215, 209, 203, 160};

} // namespace

std::string tokensLine(const Explained &e, bool colour) {
  std::string out;
  std::vector<double> rel = relative(e.weights);
  for (size_t t = 0; t < e.tokens.size(); ++t) {
    if (!out.empty()) out += ' ';
    if (colour) {
      auto level = static_cast<size_t>(std::lround(rel[t] * (kTerminalRamp.size() - 1)));
      int fg = level + 1 >= kTerminalRamp.size() ? 231 : 16; // white on the darkest, else black
      out += fmt::format("\x1b[38;5;{};48;5;{}m{}\x1b[0m", fg, kTerminalRamp[level], e.tokens[t]);
    } else {
      out += fmt::format("{} {:.4f}", e.tokens[t], e.weights[t]);
      if (t + 1 < e.tokens.size()) out += ' ';
    }
  }
  return out;
}

namespace {

constexpr const char *kStyle = R"(
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: #222;
       max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
.about { color: #555; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9em; }
.legend { display: flex; align-items: center; gap: .5rem; color: #555; font-size: .85rem; }
.legend .ramp { width: 12rem; height: .8rem; border: 1px solid #ccc;
                background: linear-gradient(to right, #ffffff, #fee8c8, #fdbb84, #fc8d59, #e34a33, #b30000); }
section.text { border: 1px solid #ddd; border-radius: 6px; padding: .75rem 1rem; margin: 1.25rem 0; }
section.text h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
.label { font-weight: 600; }
table.probs { border-collapse: collapse; font-size: .85rem; margin-bottom: .6rem; }
table.probs td { padding: .05rem .5rem .05rem 0; }
table.probs .bar { width: 10rem; }
table.probs .bar div { height: .6rem; background: #fc8d59; }
p.heatmap { line-height: 2; margin: .25rem 0; }
span.tok { padding: .1rem .2rem; border-radius: 3px; white-space: pre-wrap; }
span.tok.unk { text-decoration: underline dotted #777; }
.note { color: #777; font-size: .85rem; margin: .25rem 0; }
details { color: #555; font-size: .85rem; }
details p { white-space: pre-wrap; }
)";

std::string section(const Explained &e, size_t index) {
  std::string out = fmt::format("<section class=\"text\" data-tokens=\"{}\" data-label=\"{}\">\n", e.tokens.size(),
                                html::escape(e.labels.front()));
  out += fmt::format("<h2>#{} <span class=\"label\">{}</span> {:.4f}</h2>\n", index + 1, html::escape(e.labels.front()),
                     e.probs.front());
  out += "<table class=\"probs\">\n";
  for (size_t c = 0; c < e.labels.size(); ++c)
    out += fmt::format("<tr><td>{}</td><td class=\"bar\"><div style=\"width:{:.1f}%\"></div></td><td>{:.4f}</td></tr>\n",
                       html::escape(e.labels[c]), 100 * e.probs[c], e.probs[c]);
  out += "</table>\n<p class=\"heatmap\">";
  std::vector<double> rel = relative(e.weights);
  for (size_t t = 0; t < e.tokens.size(); ++t) {
    Rgb c = heat(rel[t]);
    const char *ink = rel[t] > 0.7 ? "#fff" : "#222";
    std::string title = fmt::format("weight {:.5f}", e.weights[t]);
    if (!e.known[t]) title += ", not in the vocabulary (read as <unk>)";
    out += fmt::format("{}<span class=\"tok{}\" data-w=\"{:.9g}\" title=\"{}\" style=\"background:rgb({},{},{});color:{}\">{}"
                       "</span>",
                       t ? " " : "", e.known[t] ? "" : " unk", e.weights[t], html::escape(title), c.r, c.g, c.b, ink,
                       html::escape(e.tokens[t]));
  }
  out += "</p>\n";
  double total = 0;
  for (double w : e.weights) total += w;
  std::string note = fmt::format("The weights of these {} tokens sum to {:.6f}.", e.tokens.size(), total);
  if (e.tokensInText > e.tokens.size())
    note += fmt::format(" The model read the first {} of the text's {} tokens.", e.tokens.size(), e.tokensInText);
  out += fmt::format("<p class=\"note\">{}</p>\n", note);
  out += fmt::format("<details><summary>The text</summary><p>{}</p></details>\n</section>\n", html::escape(e.text));
  return out;
}

} // namespace

std::string htmlPage(const std::vector<Explained> &texts, const PageInfo &info) {
  std::string out = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  out += std::string(runtime::kPageMark) + "\n";
  out += fmt::format("<title>kiln predict --explain: {}</title>\n", html::escape(info.model));
  out += fmt::format("<style>{}</style>\n</head>\n<body>\n", kStyle);
  out += "<header>\n<h1>What the model attends to</h1>\n";
  out += fmt::format("<p class=\"about\">Model <code>{}</code>, checkpoint <code>{}</code>. Each token is coloured by {}. "
                     "The colours of a text run from 0 to its largest weight; hover over a token for its weight. "
                     "Tokens are shown as the tokenizer gives them (case folded, NFKC); a dotted underline marks "
                     "a token the vocabulary does not hold, which the model read as &lt;unk&gt;.</p>\n",
                     html::escape(info.model), html::escape(info.checkpoint), html::escape(describe(info.sources)));
  out += "<div class=\"legend\">0<div class=\"ramp\"></div>the text's largest weight</div>\n</header>\n<main>\n";
  for (size_t i = 0; i < texts.size(); ++i) out += section(texts[i], i);
  out += "</main>\n</body>\n</html>\n";
  return out;
}

} // namespace kiln::tools::explain
