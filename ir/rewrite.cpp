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
    Attr value, absent;
  };
  std::vector<AttrTest> attrs;
  std::vector<std::function<bool(const Graph &, ValueId)>> conditions;
  bool commutative = false;
  bool shared = false;
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
Pattern &Pattern::attr(std::string name, Attr value, Attr absent) {
  impl->attrs.push_back({std::move(name), std::move(value), std::move(absent)});
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

ValueId Match::at(const std::string &name) const {
  auto it = values.find(name);
  if (it == values.end()) throw Error("rewrite: the pattern captured no value named '" + name + "'");
  return it->second;
}

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
  Matcher(const Graph &g, const std::vector<std::vector<NodeId>> &users) : g_(g), users_(users) {}

  bool matchValue(const Pattern &p, ValueId v, bool isRoot, Match &m) {
    const Pattern::Impl &pi = *p.impl;
    if (!pi.capture.empty()) {
      auto [it, fresh] = m.values.emplace(pi.capture, v);
      if (!fresh && it->second != v) return false;
    }
    for (const auto &cond : pi.conditions)
      if (!cond(g_, v)) return false;
    if (pi.isLeaf) return true;
    const ValueInfo &info = g_.value(v);
    if (info.kind != ValueKind::Node) return false;
    const Node &n = g_.nodes()[info.producer];
    if (n.op != pi.op || n.operands.size() != pi.operands.size()) return false;
    for (const auto &t : pi.attrs) {
      auto it = n.attrs.find(t.name);
      const Attr &actual = it == n.attrs.end() ? t.absent : it->second;
      if (!(actual == t.value)) return false;
    }
    // An interior node must die with the root: its one reader is the
    // matched node above it. (A node read twice, even inside the pattern,
    // does not match: conservative, and patterns never need it.)
    if (!isRoot && !pi.shared && (users_[v].size() != 1 || g_.isOutput(v))) return false;
    if (std::find(m.nodes.begin(), m.nodes.end(), info.producer) != m.nodes.end()) return false;
    m.nodes.push_back(info.producer);
    if (matchOperands(pi, n, {0, 1}, m)) return true;
    if (pi.commutative && n.operands.size() == 2) return matchOperands(pi, n, {1, 0}, m);
    return false;
  }

private:
  bool matchOperands(const Pattern::Impl &pi, const Node &n, std::vector<size_t> order, Match &m) {
    Match saved = m;
    for (size_t i = 0; i < pi.operands.size(); ++i) {
      size_t src = i < order.size() ? order[i] : i;
      if (!matchValue(pi.operands[i], n.operands[src], false, m)) {
        m = saved;
        return false;
      }
    }
    return true;
  }

  const Graph &g_;
  const std::vector<std::vector<NodeId>> &users_;
};

} // namespace

std::optional<Match> match(const Graph &g, const std::vector<std::vector<NodeId>> &users, const Pattern &pattern,
                           NodeId root) {
  Match m;
  m.root = root;
  Matcher matcher(g, users);
  if (!matcher.matchValue(pattern, g.nodes()[root].result, true, m)) return std::nullopt;
  return m;
}

size_t eraseDeadNodes(Graph &g) {
  const auto &nodes = g.nodes();
  std::vector<bool> live(g.numValues(), false);
  for (const Output &o : g.outputs()) live[o.value] = true;
  std::vector<bool> dead(nodes.size(), false);
  size_t count = 0;
  for (size_t i = nodes.size(); i-- > 0;) {
    if (!live[nodes[i].result]) {
      dead[i] = true;
      ++count;
      continue;
    }
    for (ValueId v : nodes[i].operands) live[v] = true;
  }
  if (count) g.eraseNodes(dead);
  return count;
}

std::map<std::string, int> applyRules(Graph &g, const std::vector<Rule> &rules, const RewriteOptions &options) {
  std::map<std::string, int> fired;
  for (int sweep = 0; sweep < options.maxSweeps; ++sweep) {
    bool changed = false;
    auto users = g.users();
    for (NodeId i = 0; static_cast<size_t>(i) < g.nodes().size(); ++i) {
      for (const Rule &rule : rules) {
        auto m = match(g, users, rule.pattern, i);
        if (!m) continue;
        ValueId oldResult = g.nodes()[i].result;
        // Taken before building: the new nodes shift the matched ones' ids.
        std::vector<SourceLoc> locs = m->locs(g);
        size_t before = g.nodes().size();
        g.setInsertionPoint(i);
        Builder b(g);
        std::optional<ValueId> replacement;
        try {
          replacement = rule.build(b, *m);
        } catch (...) {
          g.setInsertionPoint(static_cast<NodeId>(g.nodes().size()));
          throw;
        }
        NodeId added = static_cast<NodeId>(g.nodes().size() - before);
        g.setInsertionPoint(static_cast<NodeId>(g.nodes().size()));
        if (!replacement) {
          if (added) throw Error(fmt::format("rewrite rule '{}' declined after adding nodes", rule.name));
          continue;
        }
        // The new nodes stand for everything matched: they carry its locations.
        for (NodeId k = i; k < i + added; ++k) g.nodes()[k].locs = locs;
        g.replaceAllUses(oldResult, *replacement);
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
        i += added; // now the old root; the next iteration looks past it
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
