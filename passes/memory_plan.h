//===- passes/memory_plan.h - liveness-based buffer assignment --*- C++ -*-===//
//
// planMemory() gives every intermediate value of a graph (node results, at
// concrete extents under symbol bindings) an offset in one arena so that
// values whose lifetimes overlap never share bytes, reusing the space of
// dead values. Inputs and parameters live outside the arena (the caller owns
// them). Graph outputs stay live to the end. A reshape is a view of its
// operand (no bytes of its own), and an op that the backend can run in
// place may take over the buffer of an operand whose last use it is.
//
// The plan also reports, for training graphs, which forward activations are
// still alive when the backward pass starts and which backward ops need them
// (`kiln compile --emit=memory`).
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"

#include <functional>
#include <string>
#include <vector>

namespace kiln::passes {

struct BufferPlan {
  /// Byte offset in the arena; -1 for inputs, params, and values that alias
  /// another value's buffer (see aliasOf).
  int64_t offset = -1;
  int64_t bytes = 0;       ///< size of the value at the bound extents
  ir::ValueId aliasOf = -1; ///< shares this value's buffer (reshape view or in-place op)
  /// Lifetime in node indices: defined at `def`, last read at `lastUse`
  /// (nodes().size() for graph outputs).
  int64_t def = -1, lastUse = -1;
};

/// A forward value that the backward pass reads, and who reads it.
struct KeptActivation {
  ir::ValueId value = -1;
  int64_t bytes = 0;
  std::vector<ir::NodeId> readers; ///< backward nodes that read it
};

struct MemoryPlan {
  std::vector<BufferPlan> values; ///< by ValueId
  int64_t arenaBytes = 0;         ///< size of the arena (what is allocated)
  int64_t totalBytes = 0;         ///< sum of the sizes of all arena values (no reuse)
  int64_t peakLiveBytes = 0;      ///< largest sum of simultaneously live arena values
  /// For graphs with a `loss` output: forward values (defined at or before
  /// the loss) read by nodes after it.
  std::vector<KeptActivation> kept;
};

struct PlanOptions {
  int64_t alignment = 64; ///< every offset is a multiple of this
  /// Whether the backend can write node n's result over operand `operand`
  /// (same dtype and byte size, operand dead after n). Default: never.
  std::function<bool(const ir::Node &n, size_t operand)> inPlace;
};

MemoryPlan planMemory(const ir::Graph &g, const ir::SymbolBindings &bindings, const PlanOptions &options = {});

/// The report of `kiln compile --emit=memory`: arena versus the sum of
/// buffers, peak live bytes, the largest buffers, and the kept activations
/// with the backward ops that read them and their DSL locations.
std::string printMemoryPlan(const ir::Graph &g, const ir::SymbolBindings &bindings, const MemoryPlan &plan);

} // namespace kiln::passes
