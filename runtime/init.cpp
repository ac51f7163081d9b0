//===- runtime/init.cpp - parameter initialisation ------------------------===//
//
// Random values come from SplitMix64, seeded per parameter from the run seed
// and a hash of the parameter's name, so that a parameter's values depend on
// nothing but (seed, name): adding, removing or reordering other parameters
// leaves them unchanged. Uniform floats and Box-Muller normals are computed
// here rather than with <random>'s distributions, whose algorithms differ
// between standard libraries; the generator itself is exact integer
// arithmetic, and the libm calls are done in double and rounded to float, so
// results agree across machines.
//
//===----------------------------------------------------------------------===//
#include "runtime/init.h"

#include "ir/diagnostic.h"
#include "runtime/random.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace kiln::runtime {

namespace {

uint64_t fnv1a(const std::string &s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001B3ull;
  return h;
}

void fillUniform(std::span<float> out, SplitMix64 &rng, double bound) {
  for (float &x : out) x = static_cast<float>(bound * (2.0 * rng.uniform() - 1.0));
}

void fillNormal(std::span<float> out, SplitMix64 &rng, double mean, double stddev) {
  for (size_t i = 0; i < out.size(); i += 2) {
    // 1 - u lies in (0, 1], so the log is finite.
    double r = std::sqrt(-2.0 * std::log(1.0 - rng.uniform()));
    double theta = 2.0 * std::numbers::pi * rng.uniform();
    out[i] = static_cast<float>(mean + stddev * r * std::cos(theta));
    if (i + 1 < out.size()) out[i + 1] = static_cast<float>(mean + stddev * r * std::sin(theta));
  }
}

/// Initialises one parameter; returns a problem description, or "" on success.
std::string initialise(const std::string &name, const ir::ValueInfo &info, const std::vector<int64_t> &shape,
                       uint64_t seed, Tensor &out) {
  out = Tensor(info.type.dtype, shape);
  if (!ir::hasAttr(info.attrs, "init")) return "";
  std::string kind = ir::attrString(info.attrs, "init", "");
  if (info.type.dtype != ir::DType::F32) return name + ": init \"" + kind + "\" needs f32, got " + info.type.str();
  // Mixing the seed through one SplitMix step before combining keeps
  // (seed, name) pairs from colliding by simple xor cancellation.
  SplitMix64 rng(SplitMix64(seed).next() ^ fnv1a(name));
  if (kind == "normal") {
    fillNormal(out.f32(), rng, ir::attrFloat(info.attrs, "mean", 0.0), ir::attrFloat(info.attrs, "std", 1.0));
  } else if (kind == "uniform") {
    fillUniform(out.f32(), rng, ir::attrFloat(info.attrs, "bound", 1.0));
  } else if (kind == "ones") {
    std::fill(out.f32().begin(), out.f32().end(), 1.0f);
  } else if (kind != "zeros") {
    return name + ": unknown init \"" + kind + "\" (expected normal, uniform, zeros or ones)";
  }
  return "";
}

} // namespace

std::map<std::string, Tensor> materializeParams(const ir::Graph &g, const std::map<std::string, Tensor> &given,
                                                uint64_t seed, bool strict) {
  std::map<std::string, Tensor> result;
  std::vector<std::string> problems;
  std::vector<std::string> paramNames;
  for (ir::ValueId id : g.params()) {
    const ir::ValueInfo &info = g.value(id);
    paramNames.push_back(info.name);
    auto shape = ir::concreteShape(info.type.shape, {});
    if (!shape) {
      problems.push_back(info.name + ": parameter type " + info.type.str() + " has a symbolic dim");
      continue;
    }
    auto it = given.find(info.name);
    if (it == given.end()) {
      // Attribute errors (a misspelt init, a non-number std) are problems
      // with the graph, but reported together with the rest.
      try {
        std::string p = initialise(info.name, info, *shape, seed, result[info.name]);
        if (!p.empty()) problems.push_back(p);
      } catch (const Error &e) {
        problems.push_back(info.name + ": " + e.message());
      }
      continue;
    }
    const Tensor &t = it->second;
    if (t.dtype() != info.type.dtype || t.shape() != *shape)
      problems.push_back(info.name + ": expected " + info.type.str() + ", got " + t.typeStr());
    else
      result[info.name] = t;
  }
  if (strict) {
    for (const auto &[name, t] : given) {
      if (g.findParam(name) >= 0) continue;
      std::string p = name + ": not a parameter of graph '" + g.name() + "'";
      std::string near = nearestName(name, paramNames);
      problems.push_back(near.empty() ? p : p + " (did you mean '" + near + "'?)");
    }
  }
  if (problems.empty()) return result;
  std::string msg = std::to_string(problems.size()) + (problems.size() == 1 ? " problem" : " problems") +
                    " with the parameters of graph '" + g.name() + "':";
  for (const std::string &p : problems) msg += "\n  " + p;
  throw Error(msg);
}

} // namespace kiln::runtime
