//===- tests/unit/memory_plan_test.cpp - the arena planner -----------------===//
//
// passes::planMemory on small hand-built graphs, where offsets and arena
// sizes are worked out by hand (chain reuse, views, in place, outputs,
// alignment, unbound symbols, kept activations), and as a property test on
// the three example models (forward and training step, several bindings, with
// and without the oneDNN backend's in-place rule) and on random graphs of a
// few thousand values. The properties are checked independently of the
// planner's bookkeeping: every read finds its buffer alive, buffers alive at
// the same node never share bytes, offsets are aligned, the peak recomputed
// node by node matches, and peak <= arena <= sum of buffers.
//
//===----------------------------------------------------------------------===//
#include "frontend/lower.h"
#include "ir/builder.h"
#include "ir/verifier.h"
#include "passes/memory_plan.h"
#include "passes/training.h"

#include <algorithm>
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <map>
#include <random>

using namespace kiln;
using namespace kiln::ir;
using passes::MemoryPlan;
using passes::PlanOptions;

namespace {

TensorType f32(std::vector<int64_t> dims) {
  Shape s;
  for (int64_t d : dims) s.push_back(Dim::constant(d));
  return {DType::F32, s};
}

Shape shape(std::vector<int64_t> dims) { return f32(std::move(dims)).shape; }

int64_t alignUp(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

bool isNode(const Graph &g, ValueId v) { return g.value(v).kind == ValueKind::Node; }

PlanOptions alwaysInPlace() {
  PlanOptions o;
  o.inPlace = [](const Node &, size_t) { return true; };
  return o;
}

/// The invariants every plan must satisfy, recomputed from the graph and the
/// plan's offsets and lifetimes rather than trusted from its totals.
void checkInvariants(const Graph &g, const MemoryPlan &plan, int64_t align) {
  const auto &nodes = g.nodes();
  int64_t end = static_cast<int64_t>(nodes.size());
  REQUIRE(plan.values.size() == g.numValues());
  auto rootOf = [&](ValueId v) {
    while (plan.values[v].aliasOf >= 0) v = plan.values[v].aliasOf;
    return v;
  };
  std::vector<ValueId> roots;
  int64_t total = 0;
  for (const Node &n : nodes) {
    ValueId v = n.result;
    const passes::BufferPlan &bp = plan.values[v];
    if (bp.aliasOf >= 0) {
      CHECK(bp.offset == -1);
      CHECK(bp.aliasOf == rootOf(v)); // chains resolve to the root
      ValueId r = bp.aliasOf;
      CHECK(plan.values[r].bytes == bp.bytes); // views keep the element count, in place needs equal sizes
      if (isNode(g, r)) {
        CHECK(plan.values[r].def <= bp.def);
        CHECK(bp.lastUse <= plan.values[r].lastUse);
      }
      continue;
    }
    CHECK(bp.offset >= 0);
    CHECK(bp.offset % align == 0);
    CHECK(bp.offset + bp.bytes <= plan.arenaBytes);
    roots.push_back(v);
    total += alignUp(std::max<int64_t>(bp.bytes, 1), align);
  }
  for (ValueId v : g.inputs()) CHECK(plan.values[v].offset == -1);
  for (ValueId v : g.params()) CHECK(plan.values[v].offset == -1);
  CHECK(plan.totalBytes == total);

  // Every read, and every output at the end, finds its buffer alive.
  int badReads = 0;
  for (int64_t i = 0; i < end; ++i)
    for (ValueId v : nodes[i].operands) {
      ValueId r = rootOf(v);
      if (isNode(g, r) && (plan.values[r].def > i || plan.values[r].lastUse < i)) ++badReads;
    }
  CHECK(badReads == 0);
  for (const Output &o : g.outputs())
    if (isNode(g, rootOf(o.value))) CHECK(plan.values[rootOf(o.value)].lastUse == end);

  // Buffers alive at the same node (inclusive lifetimes) never share bytes.
  int overlaps = 0;
  std::string first;
  for (size_t a = 0; a < roots.size(); ++a)
    for (size_t b = a + 1; b < roots.size(); ++b) {
      const auto &x = plan.values[roots[a]], &y = plan.values[roots[b]];
      bool together = x.def <= y.lastUse && y.def <= x.lastUse;
      bool shareBytes = x.offset < y.offset + std::max<int64_t>(y.bytes, 1) &&
                        y.offset < x.offset + std::max<int64_t>(x.bytes, 1);
      if (together && shareBytes && overlaps++ == 0) first = fmt::format("values {} and {}", roots[a], roots[b]);
    }
  CAPTURE(first);
  CHECK(overlaps == 0);

  // In place overwrites a buffer: each value written over it starts a new
  // version (views belong to their operand's), and every read of the older
  // versions must come at or before that node. Lifetimes are recomputed from
  // the graph, since the plan reports a root's lifetime over all versions.
  size_t n = g.numValues();
  std::vector<int64_t> lastRead(n, -1);
  for (int64_t i = 0; i < end; ++i) {
    lastRead[nodes[i].result] = std::max(lastRead[nodes[i].result], i);
    for (ValueId v : nodes[i].operands) lastRead[v] = std::max(lastRead[v], i);
  }
  for (const Output &o : g.outputs()) lastRead[o.value] = end;
  std::vector<ValueId> version(n);
  for (size_t v = 0; v < n; ++v) version[v] = static_cast<ValueId>(v);
  for (const Node &node : nodes)
    if (node.op == OpKind::Reshape && plan.values[node.result].aliasOf >= 0) version[node.result] = version[node.operands[0]];
  std::map<ValueId, int64_t> versionLast;
  for (const Node &node : nodes) versionLast[version[node.result]] = std::max(versionLast[version[node.result]], lastRead[node.result]);
  std::map<ValueId, int64_t> readUntil; // by root buffer: the last read of the versions so far
  int clobbered = 0;
  for (const Node &node : nodes) {
    ValueId v = node.result, r = rootOf(v);
    if (version[v] != v || !isNode(g, r)) continue; // a view, or a view of an input
    int64_t def = plan.values[v].def;
    if (readUntil.count(r) && readUntil[r] > def) ++clobbered;
    readUntil[r] = std::max(readUntil[r], versionLast[v]);
  }
  CHECK(clobbered == 0);

  // The peak, node by node.
  int64_t peak = 0;
  for (int64_t t = 0; t <= end; ++t) {
    int64_t live = 0;
    for (ValueId v : roots)
      if (plan.values[v].def <= t && t <= plan.values[v].lastUse)
        live += alignUp(std::max<int64_t>(plan.values[v].bytes, 1), align);
    peak = std::max(peak, live);
  }
  CHECK(plan.peakLiveBytes == peak);
  CHECK(plan.arenaBytes >= plan.peakLiveBytes);
  CHECK(plan.arenaBytes <= plan.totalBytes);
}

/// Kept activations recomputed from the definition: node results defined at
/// or before the loss and read after it, with those readers.
void checkKept(const Graph &g, const MemoryPlan &plan) {
  ValueId loss = -1;
  for (const Output &o : g.outputs())
    if (o.name == "loss") loss = o.value;
  if (loss < 0) {
    CHECK(plan.kept.empty());
    return;
  }
  NodeId lossNode = g.value(loss).producer;
  std::map<ValueId, std::vector<NodeId>> expected;
  for (NodeId i = lossNode + 1; i < static_cast<NodeId>(g.nodes().size()); ++i)
    for (ValueId v : g.nodes()[i].operands)
      if (isNode(g, v) && g.value(v).producer <= lossNode) {
        auto &readers = expected[v];
        if (readers.empty() || readers.back() != i) readers.push_back(i);
      }
  std::map<ValueId, std::vector<NodeId>> got;
  for (const passes::KeptActivation &k : plan.kept) {
    CHECK(k.bytes == plan.values[k.value].bytes);
    got[k.value] = k.readers;
  }
  CHECK(got == expected);
}

} // namespace

TEST_CASE("memory plan: a chain reuses the buffer two nodes back") {
  // a -> b -> c: b cannot take a's bytes (node 1 reads a while writing b),
  // c can (a is dead after node 1).
  Graph g("chain");
  Builder b(g);
  ValueId x = b.input("x", f32({16}));
  ValueId a = b.neg(x), bb = b.neg(a), c = b.neg(bb);
  b.output("c", c);
  MemoryPlan p = passes::planMemory(g, {});
  CHECK(p.values[a].offset == 0);
  CHECK(p.values[bb].offset == 64);
  CHECK(p.values[c].offset == 0);
  CHECK(p.values[a].def == 0);
  CHECK(p.values[a].lastUse == 1);
  CHECK(p.values[c].lastUse == 3); // an output lives to nodes().size()
  CHECK(p.values[x].offset == -1);
  CHECK(p.values[x].bytes == 64);
  CHECK(p.arenaBytes == 128);
  CHECK(p.totalBytes == 192);
  CHECK(p.peakLiveBytes == 128);
  CHECK(p.kept.empty());
  checkInvariants(g, p, 64);
  std::string report = passes::printMemoryPlan(g, {}, p);
  CHECK(report.find("graph @chain\n") == 0);
  CHECK(report.find("arena 128 B (sum of buffers 192 B, 1.5x reuse); peak live 128 B; 3 buffers, 0 views/in-place") !=
        std::string::npos);
}

TEST_CASE("memory plan: alignment") {
  // f32[10] is 40 bytes; every buffer starts on an alignment boundary.
  Graph g("chain");
  Builder b(g);
  ValueId a = b.neg(b.input("x", f32({10})));
  ValueId bb = b.neg(a), c = b.neg(bb);
  b.output("c", c);
  PlanOptions o;
  o.alignment = 256;
  MemoryPlan p = passes::planMemory(g, {}, o);
  CHECK(p.values[a].bytes == 40);
  CHECK(p.values[a].offset == 0);
  CHECK(p.values[bb].offset == 256);
  CHECK(p.values[c].offset == 0);
  CHECK(p.arenaBytes == 512);
  checkInvariants(g, p, 256);
  MemoryPlan q = passes::planMemory(g, {});
  CHECK(q.values[bb].offset == 64);
  CHECK(q.arenaBytes == 128);
}

TEST_CASE("memory plan: outputs live to the end, unread values die at once") {
  Graph g("outs");
  Builder b(g);
  ValueId x = b.input("x", f32({16}));
  ValueId unread = b.neg(x);
  ValueId a = b.neg(x);
  b.output("a", a);
  ValueId bb = b.neg(a), c = b.neg(bb);
  b.output("c", c);
  MemoryPlan p = passes::planMemory(g, {});
  CHECK(p.values[unread].def == 0);
  CHECK(p.values[unread].lastUse == 0);
  CHECK(p.values[unread].offset == 0);
  CHECK(p.values[a].offset == 0); // the unread value's bytes are free by node 1
  CHECK(p.values[a].lastUse == 4);
  CHECK(p.values[bb].offset == 64);
  CHECK(p.values[c].offset == 128); // a is still alive, unlike in the chain
  CHECK(p.arenaBytes == 192);
  checkInvariants(g, p, 64);
}

TEST_CASE("memory plan: reshapes are views that keep their root alive") {
  Graph g("views");
  Builder b(g);
  ValueId x = b.input("x", f32({4, 4}));
  ValueId a = b.neg(x);                      // node 0
  ValueId v = b.reshape(a, shape({16}));     // node 1
  ValueId w = b.reshape(v, shape({2, 8}));   // node 2, a view of a view
  ValueId late = b.neg(x);                   // node 3
  ValueId c = b.neg(w);                      // node 4, reads a's bytes
  ValueId r = b.reshape(x, shape({16}));     // node 5, a view of an input
  b.output("late", late);
  b.output("c", c);
  b.output("r", r);
  MemoryPlan p = passes::planMemory(g, {});
  CHECK(p.values[v].aliasOf == a);
  CHECK(p.values[w].aliasOf == a); // the root, not v
  CHECK(p.values[v].offset == -1);
  CHECK(p.values[w].bytes == 64);
  CHECK(p.values[a].lastUse == 4); // extended to w's last read
  CHECK(p.values[r].aliasOf == x);
  CHECK(p.values[r].offset == -1);
  CHECK(p.values[a].offset == 0);
  CHECK(p.values[late].offset == 64); // would be 0 without the extension
  CHECK(p.values[c].offset == 128);
  CHECK(p.arenaBytes == 192);
  CHECK(p.totalBytes == 192); // views own no bytes
  checkInvariants(g, p, 64);
  CHECK(passes::printMemoryPlan(g, {}, p).find("3 buffers, 3 views/in-place") != std::string::npos);
}

TEST_CASE("memory plan: in place") {
  Graph g("inplace");
  Builder b(g);
  ValueId x = b.input("x", f32({16}));

  SUBCASE("a chain of elementwise ops shares one buffer") {
    ValueId a = b.neg(x), t = b.tanh(a), c = b.relu(t);
    b.output("c", c);
    MemoryPlan p = passes::planMemory(g, {}, alwaysInPlace());
    CHECK(p.values[a].aliasOf == -1); // never over an input
    CHECK(p.values[t].aliasOf == a);
    CHECK(p.values[c].aliasOf == a); // the root, not t
    CHECK(p.values[a].lastUse == 3);
    CHECK(p.arenaBytes == 64);
    CHECK(p.totalBytes == 64);
    checkInvariants(g, p, 64);
    MemoryPlan never = passes::planMemory(g, {}); // the default predicate says no
    CHECK(never.values[t].aliasOf == -1);
    CHECK(never.arenaBytes == 128);
  }
  SUBCASE("not over an operand that is read later") {
    ValueId a = b.neg(x), t = b.tanh(a), c = b.add(a, t);
    b.output("c", c);
    MemoryPlan p = passes::planMemory(g, {}, alwaysInPlace());
    CHECK(p.values[t].aliasOf == -1);
    CHECK(p.values[c].aliasOf == a); // a's last read
    checkInvariants(g, p, 64);
  }
  SUBCASE("not over a graph output") {
    ValueId a = b.neg(x), t = b.tanh(a);
    b.output("a", a);
    b.output("t", t);
    MemoryPlan p = passes::planMemory(g, {}, alwaysInPlace());
    CHECK(p.values[t].aliasOf == -1);
    checkInvariants(g, p, 64);
  }
  SUBCASE("not over a buffer whose view is read later") {
    ValueId a = b.neg(x), v = b.reshape(a, shape({4, 4})), t = b.tanh(a), c = b.neg(v);
    b.output("t", t);
    b.output("c", c);
    MemoryPlan p = passes::planMemory(g, {}, alwaysInPlace());
    CHECK(p.values[t].aliasOf == -1);
    CHECK(p.values[c].aliasOf == a); // through the view, at the buffer's last read
    checkInvariants(g, p, 64);
  }
  SUBCASE("not when the sizes differ") {
    ValueId a = b.neg(x), s = b.sum(a, 0);
    b.output("s", s);
    MemoryPlan p = passes::planMemory(g, {}, alwaysInPlace());
    CHECK(p.values[s].aliasOf == -1);
    checkInvariants(g, p, 64);
  }
  SUBCASE("the predicate picks the operand") {
    ValueId a = b.neg(x), c = b.neg(x), s = b.add(a, c);
    b.output("s", s);
    PlanOptions o;
    std::vector<std::pair<OpKind, size_t>> asked;
    o.inPlace = [&](const Node &n, size_t k) {
      asked.push_back({n.op, k});
      return k == 1;
    };
    MemoryPlan p = passes::planMemory(g, {}, o);
    CHECK(p.values[s].aliasOf == c);
    CHECK(std::find(asked.begin(), asked.end(), std::pair<OpKind, size_t>{OpKind::Add, 1}) != asked.end());
    checkInvariants(g, p, 64);
  }
}

TEST_CASE("memory plan: sizes at the bindings; an unbound symbol is an error") {
  Graph g("sym");
  Builder b(g);
  ValueId x = b.input("x", {DType::F32, {Dim::named("N"), Dim::constant(3)}});
  ValueId m = b.compare(OpKind::Greater, x, b.constant(0.0));
  b.output("m", m);
  MemoryPlan p = passes::planMemory(g, {{"N", 5}});
  CHECK(p.values[x].bytes == 60);
  CHECK(p.values[m].bytes == 15); // bool is one byte
  CHECK(passes::printMemoryPlan(g, {{"N", 5}}, p).find("graph @sym at N=5\n") == 0);
  CHECK_THROWS_WITH_AS(passes::planMemory(g, {}), doctest::Contains("symbol N"), Error);
  CHECK_THROWS_WITH_AS(passes::planMemory(g, {{"T", 5}}), doctest::Contains("symbol N"), Error);
}

TEST_CASE("memory plan: kept activations") {
  Graph g("lossy");
  Builder b(g);
  ValueId x = b.input("x", f32({16}));
  ValueId a = b.tanh(x);     // node 0: read before and after the loss
  ValueId u = b.neg(a);      // node 1: read only before the loss
  ValueId l = b.sum(u, 0);   // node 2: the loss
  ValueId d = b.mul(a, a);   // node 3
  ValueId e = b.add(d, a);   // node 4
  ValueId f = b.mul(e, x);   // node 5: reads an input, which is never kept
  b.output("loss", l);
  b.output("f", f);
  MemoryPlan p = passes::planMemory(g, {});
  REQUIRE(p.kept.size() == 1);
  CHECK(p.kept[0].value == a);
  CHECK(p.kept[0].bytes == 64);
  CHECK(p.kept[0].readers == std::vector<NodeId>{3, 4});
  checkKept(g, p);
  std::string report = passes::printMemoryPlan(g, {}, p);
  CHECK(report.find("kept for the backward pass: 1 activations, 64 B") != std::string::npos);
  CHECK(report.find("read by mul, add") != std::string::npos);
}

TEST_CASE("memory plan: the example models, forward and training step") {
  // The oneDNN backend's rule: eltwise ops over operand 0 of equal extents.
  PlanOptions eltwise;
  eltwise.inPlace = [](const Node &n, size_t k) {
    switch (n.op) {
    case OpKind::Tanh: case OpKind::Relu: case OpKind::Neg: case OpKind::Add: case OpKind::Sub: case OpKind::Mul:
    case OpKind::Div: return k == 0;
    default: return false;
    }
  };
  for (const char *model : {"classifier_additive", "classifier_attnpool", "classifier_sdpa"}) {
    frontend::LowerOptions opts;
    opts.overrides = {{"vocab", "50"}, {"embed", "8"}, {"hidden", "12"}, {"classes", "3"}};
    auto lowered = frontend::compileFile(std::string(KILN_SOURCE_DIR) + "/examples/" + model + ".kiln", opts);
    const Graph &forward = *lowered.module.find("forward");
    passes::OptimizerConfig noGrads;
    noGrads.outputGradients = false;
    std::vector<std::pair<std::string, Graph>> graphs = {{"forward", forward},
                                                         {"train", passes::buildTrainGraph(forward, {})},
                                                         {"train-no-grads", passes::buildTrainGraph(forward, noGrads)}};
    for (auto &[which, g] : graphs) {
      for (SymbolBindings bind : {SymbolBindings{{"B", 1}, {"T", 1}}, SymbolBindings{{"B", 3}, {"T", 7}},
                                  SymbolBindings{{"B", 64}, {"T", 128}}}) {
        for (bool inPlace : {false, true}) {
          std::string what = fmt::format("{} @{} B={} T={} in-place={}", model, which, bind["B"], bind["T"], inPlace);
          CAPTURE(what);
          MemoryPlan p = passes::planMemory(g, bind, inPlace ? eltwise : PlanOptions{});
          checkInvariants(g, p, 64);
          checkKept(g, p);
          if (which == "forward") continue;
          CHECK(p.arenaBytes < p.totalBytes);
          REQUIRE(!p.kept.empty());
          NodeId lossNode = -1;
          for (const Output &o : g.outputs())
            if (o.name == "loss") lossNode = g.value(o.value).producer;
          bool weights = false;
          for (const passes::KeptActivation &k : p.kept) {
            CHECK(g.value(k.value).producer <= lossNode);
            weights |= g.value(k.value).name == "attention.weights";
          }
          CHECK(weights); // all three models keep their softmax for softmax_grad
        }
      }
    }
  }
}

TEST_CASE("memory plan: random graphs of a few thousand values") {
  // Values of 16 and 15 elements (64 and 60 bytes, so sizes are not all
  // multiples of the alignment), reshaped among their family of shapes,
  // reduced, combined and made outputs at random; reads favour recent values
  // but reach back anywhere, so lifetimes vary from one node to the whole graph.
  const std::vector<std::vector<Shape>> families = {{shape({16}), shape({4, 4}), shape({2, 8})},
                                                    {shape({15}), shape({3, 5})}};
  for (unsigned seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    auto uniform = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
    Graph g("random");
    Builder b(g);
    std::vector<ValueId> pool = {b.input("x", f32({4, 4})), b.input("y", f32({3, 5})),
                                 b.param("p", f32({2, 8}))};
    int outputs = 0;
    for (int i = 0; i < 3000; ++i) {
      ValueId v = uniform(2) ? pool[pool.size() - 1 - uniform(std::min<size_t>(pool.size(), 8))] : pool[uniform(pool.size())];
      const TensorType &t = g.type(v);
      int64_t count = 1;
      for (const Dim &d : t.shape) count *= d.value;
      ValueId r;
      switch (uniform(5)) {
      case 0: r = b.neg(v); break;
      case 1: r = b.tanh(v); break;
      case 2: {
        ValueId w = v; // a same-typed partner among the recent values, else v itself
        for (size_t k = pool.size(); k-- > 0 && pool.size() - k < 32;)
          if (pool[k] != v && g.type(pool[k]) == t) w = pool[k];
        r = b.add(v, w);
        break;
      }
      case 3:
        r = (count == 16 || count == 15) ? b.reshape(v, families[count == 16 ? 0 : 1][uniform(count == 16 ? 3 : 2)])
                                         : b.neg(v);
        break;
      default: r = t.rank() > 0 ? b.sum(v, 0) : b.neg(v); break;
      }
      pool.push_back(r);
      if (uniform(20) == 0) b.output(fmt::format("o{}", outputs++), r);
    }
    b.output("last", pool.back());
    verify(g);
    PlanOptions some;
    some.inPlace = [](const Node &n, size_t k) { return (n.result * 7 + static_cast<ValueId>(k)) % 3 != 0; };
    for (int64_t align : {16, 64}) {
      some.alignment = align;
      MemoryPlan p = passes::planMemory(g, {}, some);
      checkInvariants(g, p, align);
      CHECK(p.arenaBytes < p.totalBytes);
      PlanOptions plain;
      plain.alignment = align;
      checkInvariants(g, passes::planMemory(g, {}, plain), align);
    }
  }
}
