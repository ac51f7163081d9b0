//===- ir/rewrite.h - declarative pattern rewriting on graphs ---*- C++ -*-===//
//
// A fusion or a simplification is a Rule: a Pattern (a small DAG of ops
// matched by kind, attributes, shapes and number of users) and a function
// that builds the replacement. applyRules() walks the graph's nodes in
// order, tries every rule rooted at each node, and on a match builds the
// replacement just before the root (every value the pattern's leaves match
// is defined before the root, so the order stays topological), points the
// root's users at it, and removes the nodes nothing reads any more. It
// repeats the walk until no rule fires (a fixed point), bounded so that a
// pair of rules that undo each other cannot loop forever.
//
// Matching starts at the root and follows operands. A leaf (Pattern::any)
// matches any value; naming it captures the value, and a name used twice
// must match the same value both times (a DAG: `x` as both query and key).
// (Its structure is matched where the name first binds; later uses only
// compare the value.) An op pattern matches a node of that kind with exactly that many
// operands whose operands match in order (or, for commutative(), in either
// order). Every matched node except the root must be read only inside the
// pattern and must not be a graph output, unless marked shared(): removing
// the root must make it dead, or the "fusion" would compute it twice. A
// node marked exposable() may also be a graph output (the attention weights
// that `kiln predict --explain` asks for): the rule must then give that
// output a result of its replacement (Graph::replaceAllUses), and
// applyRules checks that it did.
//
// A rule may have more than one root (Rule::more): a fusion of a forward
// computation and its backward pass replaces several exits (the output,
// and each gradient). The further patterns are matched anywhere in the
// graph with the captures of the first, and the one-reader rule then holds
// for the union: the forward's softmax weights may be read by the backward
// nodes the same rule replaces. Such a rule builds through a Rewriter,
// which places each replacement just before the root it replaces.
//
// The replacement's nodes carry the source locations of every node the
// pattern matched, so a fused op still names the DSL lines it came from.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/builder.h"
#include "ir/graph.h"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln::ir::rewrite {

class Pattern {
public:
  /// Any value (input, parameter or node result).
  static Pattern any(std::string capture = {});
  /// A node of kind `op` whose operands match `operands`, in order.
  static Pattern op(OpKind op, std::vector<Pattern> operands);

  /// Captures the matched value (leaf) or node result (op) under `name`.
  Pattern &as(std::string name);
  /// The attribute must equal `value`; an absent one has the op table's
  /// default (ops.def), so a pattern need not care how the node was written.
  Pattern &attr(std::string name, Attr value);
  /// An extra condition on the matched value (its shape, its dtype, ...);
  /// on an op pattern it runs only once the value is known to be that op's
  /// result, so it may look at the producing node.
  Pattern &where(std::function<bool(const Graph &, ValueId)> condition);
  /// A two-operand op whose operands may match in either order.
  Pattern &commutative();
  /// The node may have readers outside the pattern or be an output: it is
  /// then left in place, and the replacement must not need it removed.
  Pattern &shared();
  /// The node may also be a graph output (no other reader outside the
  /// pattern): the rule then points that output at a result of its
  /// replacement; Match::exposed lists such values.
  Pattern &exposable();

  struct Impl;
  std::shared_ptr<Impl> impl;
};

/// What a pattern matched.
struct Match {
  NodeId root = -1;
  std::vector<NodeId> roots;             ///< root first, then those of Rule::more
  std::map<std::string, ValueId> values; ///< captures
  std::vector<NodeId> nodes;             ///< every matched node, roots included
  std::vector<NodeId> sharedNodes;       ///< matched nodes marked shared()
  std::vector<NodeId> exposableNodes;    ///< matched nodes marked exposable()
  /// Results of exposable() nodes that are graph outputs: the rule must
  /// replace them (see the header comment).
  std::vector<ValueId> exposed;
  /// Whether v is one of `exposed`.
  bool isExposed(ValueId v) const;
  ValueId at(const std::string &name) const;
  /// The source locations of the matched nodes, in graph order, without repeats.
  std::vector<SourceLoc> locs(const Graph &g) const;
};

/// Matches `pattern` rooted at node `root`, then each of `more` rooted
/// anywhere, sharing captures; `users` is g.users().
std::optional<Match> match(const Graph &g, const std::vector<std::vector<NodeId>> &users, const Pattern &pattern,
                           NodeId root, const std::vector<Pattern> &more = {});

/// Builds the replacements of a multi-root rule: before(k) positions a
/// builder just before root k (indices into Match::roots), wherever the
/// nodes added so far have moved it.
class Rewriter {
public:
  Rewriter(Graph &g, std::vector<NodeId> roots) : g_(g), roots_(std::move(roots)), builder_(g) {}
  Builder &before(size_t root);
  /// Ends building; returns the current index of every root.
  const std::vector<NodeId> &finish();
  Graph &graph() { return g_; }

private:
  void settle();
  Graph &g_;
  std::vector<NodeId> roots_;
  Builder builder_;
  NodeId at_ = -1;
  size_t sizeAtSwitch_ = 0;
};

struct Rule {
  std::string name;
  Pattern pattern;
  /// Builds the replacement with `b` (whose insertion point is the root) and
  /// returns the value that replaces the root's result, or nullopt to
  /// decline (the graph must then be unchanged).
  std::function<std::optional<ValueId>(Builder &b, const Match &m)> build;
  /// Further roots (see the header comment); with them, buildMulti replaces
  /// build and returns one replacement per root, or nullopt to decline.
  std::vector<Pattern> more;
  std::function<std::optional<std::vector<ValueId>>(Rewriter &r, const Match &m)> buildMulti;
};

struct RewriteOptions {
  /// Verify the graph after every rewrite (on in debug builds, and with
  /// --verify-each); a broken rewrite then names its rule.
  bool verifyEach = false;
  int maxSweeps = 32;
};

/// Applies the rules to a fixed point; returns the number of rewrites, by rule name.
std::map<std::string, int> applyRules(Graph &g, const std::vector<Rule> &rules, const RewriteOptions &options = {});

/// Removes nodes whose results nothing reads (transitively); returns how many.
size_t eraseDeadNodes(Graph &g);

} // namespace kiln::ir::rewrite
