//===- ir/rewrite.cpp - declarative pattern rewriting on graphs -----------===//
//
// Backtracking matcher over operand edges, and the fixed-point driver; see
// rewrite.h for the semantics.
//
//===----------------------------------------------------------------------===//
#include "ir/rewrite.h"

#include "ir/verifier.h"

#include <algorithm>
#include <fmt/format.h>

namespace kiln::ir::rewrite {

struct Pattern::Impl {
  bool isLeaf = true;
  OpKind op = OpKind::Constant;
  std::vector<Pattern> operands;
  std::string capture;
  struct AttrTest {
    std::string name;
    Attr value;
  };
  std::vector<AttrTest> attrs;
  std::vector<std::function<bool(const Graph &, ValueId)>> conditions;
  bool commutative = false;
  bool shared = false;
  bool exposable = false;
};

Pattern Pattern::any(std::string capture) {
  Pattern p;
  p.impl = std::make_shared<Impl>();
  p.impl->capture = std::move(capture);
  return p;
}

Pattern Pattern::op(OpKind op, std::vector<Pattern> operands) {
  Pattern p;
  p.impl = std::make_shared<Impl>();
  p.impl->isLeaf = false;
  p.impl->op = op;
  p.impl->operands = std::move(operands);
  return p;
}

Pattern &Pattern::as(std::string name) {
  impl->capture = std::move(name);
  return *this;
}
Pattern &Pattern::attr(std::string name, Attr value) {
  if (impl->isLeaf) throw Error("rewrite: attr() on a leaf pattern (only op patterns have attributes)");
  const AttrSpec *spec = findAttrSpec(impl->op, name);
  if (!spec) throw Error(fmt::format("rewrite: {} declares no attribute '{}'", opName(impl->op), name));
  impl->attrs.push_back({std::move(name), std::move(value)});
  return *this;
}
Pattern &Pattern::where(std::function<bool(const Graph &, ValueId)> condition) {
  impl->conditions.push_back(std::move(condition));
  return *this;
}
Pattern &Pattern::commutative() {
  impl->commutative = true;
  return *this;
}
Pattern &Pattern::shared() {
  impl->shared = true;
  return *this;
}
Pattern &Pattern::exposable() {
  impl->exposable = true;
  return *this;
}

ValueId Match::at(const std::string &name) const {
  auto it = values.find(name);
  if (it == values.end()) throw Error("rewrite: the pattern captured no value named '" + name + "'");
  return it->second;
}

bool Match::isExposed(ValueId v) const { return std::find(exposed.begin(), exposed.end(), v) != exposed.end(); }

std::vector<SourceLoc> Match::locs(const Graph &g) const {
  std::vector<NodeId> order = nodes;
  std::sort(order.begin(), order.end());
  std::vector<SourceLoc> out;
  for (NodeId n : order)
    for (const SourceLoc &l : g.nodes()[n].locs)
      if (std::find(out.begin(), out.end(), l) == out.end()) out.push_back(l);
  return out;
}

namespace {

class Matcher {
public:
  Matcher(const Graph &g) : g_(g) {}

  bool matchValue(const Pattern &p, ValueId v, Match &m) {
    const Pattern::Impl &pi = *p.impl;
    if (!pi.capture.empty()) {
      auto [it, fresh] = m.values.emplace(pi.capture, v);
      if (!fresh) {
        // A name bound before must be the same value; its structure was
        // matched where the name first appeared.
        return it->second == v;
      }
    }
    auto conditionsHold = [&] {
      for (const auto &cond : pi.conditions)
        if (!cond(g_, v)) return false;
      return true;
    };
    if (pi.isLeaf) return conditionsHold();
    const ValueInfo &info = g_.value(v);
    // Only a node's first result is matched by an op pattern: a pattern
    // over a multi-result op's other results would need to name which.
    if (info.kind != ValueKind::Node || info.resultIndex != 0) return false;
    const Node &n = g_.nodes()[info.producer];
    if (n.op != pi.op || n.operands.size() != pi.operands.size()) return false;
    // An op pattern's conditions may rely on the value being that op's
    // result (its node, its attributes): they run after the kind check.
    if (!conditionsHold()) return false;
    if (!pi.attrs.empty()) {
      Attrs full = withDefaults(n.op, n.attrs);
      for (const auto &t : pi.attrs) {
        auto it = full.find(t.name);
        if (it == full.end() || !(it->second == t.value)) return false;
      }
    }
    // A DAG pattern may reach a node twice (through two captures); it is
    // matched once.
    if (std::find(m.nodes.begin(), m.nodes.end(), info.producer) != m.nodes.end()) return false;
    m.nodes.push_back(info.producer);
    if (pi.shared) m.sharedNodes.push_back(info.producer);
    if (pi.exposable) m.exposableNodes.push_back(info.producer);
    if (matchOperands(pi, n, {0, 1}, m)) return true;
    if (pi.commutative && n.operands.size() == 2) return matchOperands(pi, n, {1, 0}, m);
    return false;
  }

  bool matchOperands(const Pattern::Impl &pi, const Node &n, std::vector<size_t> order, Match &m) {
    Match saved = m;
    for (size_t i = 0; i < pi.operands.size(); ++i) {
      size_t src = i < order.size() ? order[i] : i;
      if (!matchValue(pi.operands[i], n.operands[src], m)) {
        m = saved;
        return false;
      }
    }
    return true;
  }

private:
  const Graph &g_;
};

bool contains(const std::vector<NodeId> &v, NodeId n) { return std::find(v.begin(), v.end(), n) != v.end(); }

} // namespace

std::optional<Match> match(const Graph &g, const std::vector<std::vector<NodeId>> &users, const Pattern &pattern,
                           NodeId root, const std::vector<Pattern> &more) {
  Match m;
  m.root = root;
  m.roots.push_back(root);
  Matcher matcher(g);
  if (!matcher.matchValue(pattern, g.nodes()[root].result, m)) return std::nullopt;
  for (const Pattern &p : more) {
    bool found = false;
    for (NodeId j = 0; !found && static_cast<size_t>(j) < g.nodes().size(); ++j) {
      if (contains(m.nodes, j)) continue;
      Match attempt = m;
      if (matcher.matchValue(p, g.nodes()[j].result, attempt)) {
        attempt.roots.push_back(j);
        m = std::move(attempt);
        found = true;
      }
    }
    if (!found) return std::nullopt;
  }
  // Every matched node but the roots dies with them: all its readers are
  // matched, and it is no output (unless the pattern marked it shared).
  for (NodeId n : m.nodes) {
    if (contains(m.roots, n) || contains(m.sharedNodes, n)) continue;
    for (ValueId r : g.nodes()[n].results()) {
      if (g.isOutput(r)) {
        if (!contains(m.exposableNodes, n)) return std::nullopt;
        m.exposed.push_back(r);
      }
      for (NodeId u : users[r])
        if (!contains(m.nodes, u)) return std::nullopt;
    }
  }
  return m;
}

void Rewriter::settle() {
  if (at_ < 0) return;
  // Everything added since the last switch went in before at_: the roots
  // at or after it moved down by that many.
  NodeId added = static_cast<NodeId>(g_.nodes().size() - sizeAtSwitch_);
  for (NodeId &r : roots_)
    if (r >= at_) r += added;
  at_ = -1;
}

Builder &Rewriter::before(size_t root) {
  settle();
  at_ = roots_.at(root);
  sizeAtSwitch_ = g_.nodes().size();
  g_.setInsertionPoint(at_);
  return builder_;
}

const std::vector<NodeId> &Rewriter::finish() {
  settle();
  g_.setInsertionPoint(static_cast<NodeId>(g_.nodes().size()));
  return roots_;
}

size_t eraseDeadNodes(Graph &g) {
  const auto &nodes = g.nodes();
  std::vector<bool> live(g.numValues(), false);
  for (const Output &o : g.outputs()) live[o.value] = true;
  std::vector<bool> dead(nodes.size(), false);
  size_t count = 0;
  for (size_t i = nodes.size(); i-- > 0;) {
    bool anyLive = false;
    for (ValueId r : nodes[i].results()) anyLive = anyLive || live[r];
    if (!anyLive) {
      dead[i] = true;
      ++count;
      continue;
    }
    for (ValueId v : nodes[i].operands) live[v] = true;
  }
  if (count) g.eraseNodes(dead);
  return count;
}

namespace {

/// Applies rule to match m and returns the first root's index after the
/// rewrite; nullopt (graph unchanged) when the rule declines.
std::optional<NodeId> applyMatch(Graph &g, const Rule &rule, const Match &m) {
  // Taken before building: new nodes shift the matched ones' ids.
  std::vector<SourceLoc> locs = m.locs(g);
  std::vector<ValueId> oldResults;
  for (NodeId r : m.roots) oldResults.push_back(g.nodes()[r].result);
  size_t nodesBefore = g.nodes().size();
  ValueId valuesBefore = static_cast<ValueId>(g.numValues());
  Rewriter rewriter(g, m.roots);
  std::optional<std::vector<ValueId>> replacements;
  try {
    if (rule.buildMulti) {
      replacements = rule.buildMulti(rewriter, m);
    } else {
      std::optional<ValueId> one = rule.build(rewriter.before(0), m);
      if (one) replacements = std::vector<ValueId>{*one};
    }
  } catch (...) {
    rewriter.finish();
    throw;
  }
  NodeId root = rewriter.finish().front();
  if (!replacements) {
    if (g.nodes().size() != nodesBefore)
      throw Error(fmt::format("rewrite rule '{}' declined after adding nodes", rule.name));
    return std::nullopt;
  }
  if (replacements->size() != oldResults.size())
    throw Error(fmt::format("rewrite rule '{}' returned {} replacements for {} roots", rule.name, replacements->size(),
                            oldResults.size()));
  // The new nodes (results newer than every old value) stand for everything
  // matched: they carry its locations.
  for (Node &n : g.nodes())
    if (n.result >= valuesBefore) n.locs = locs;
  for (size_t k = 0; k < oldResults.size(); ++k) g.replaceAllUses(oldResults[k], (*replacements)[k]);
  for (ValueId v : m.exposed)
    if (g.isOutput(v))
      throw Error(fmt::format("rewrite rule '{}' left a graph output reading %{}, which it removes", rule.name,
                              g.value(v).name));
  return root;
}

} // namespace

std::map<std::string, int> applyRules(Graph &g, const std::vector<Rule> &rules, const RewriteOptions &options) {
  std::map<std::string, int> fired;
  for (int sweep = 0; sweep < options.maxSweeps; ++sweep) {
    bool changed = false;
    auto users = g.users();
    for (NodeId i = 0; static_cast<size_t>(i) < g.nodes().size(); ++i) {
      for (const Rule &rule : rules) {
        auto m = match(g, users, rule.pattern, i, rule.more);
        if (!m) continue;
        std::optional<NodeId> root = applyMatch(g, rule, *m);
        if (!root) continue;
        ++fired[rule.name];
        changed = true;
        if (options.verifyEach) {
          try {
            verify(g);
          } catch (const Error &e) {
            throw Error(fmt::format("after rewrite rule '{}': {}", rule.name, e.message()), e.loc());
          }
        }
        users = g.users();
        i = *root; // the old root, moved by what was added; the walk goes on after it
        break;
      }
    }
    if (!changed) break;
    eraseDeadNodes(g);
    if (sweep + 1 == options.maxSweeps)
      throw Error(fmt::format("@{}: rewrite rules still fire after {} sweeps (rules that undo each other?)", g.name(),
                              options.maxSweeps));
  }
  eraseDeadNodes(g);
  return fired;
}

} // namespace kiln::ir::rewrite
