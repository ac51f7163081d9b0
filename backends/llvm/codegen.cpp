//===- backends/llvm/codegen.cpp - LLVM IR for a plan ---------------------===//
//
// The elementwise family as loop nests. A node's result, of extents E, and
// each operand (aligned to E's rank with leading 1s, numpy's rule) are seen
// through the same merged dims: adjacent dims merge where every operand
// broadcasts along both or along neither, and dims of extent 1 drop. The
// last merged dim is the row ("cols"), the rest the rows; an operand's
// offset is its own (row offset + col), with stride 0 along a dim it
// broadcasts. A work item is a row, or a block of kColumnBlock columns of
// a long row when there are few rows (so that a [N] result still splits
// over the threads). Each step is
//     kiln_step_K(values, host):  kiln_rt_parallel_for(body_K, values, items, minItems)
//     body_K(values, begin, end): for each item: for each col: out[..] = f(operands[..])
// with the inner loop in a function of noalias pointers (inlined at O3, its
// noalias kept as scopes), so that the vectoriser needs no run-time
// overlap checks.
//
//===----------------------------------------------------------------------===//
#include "backends/llvm/codegen.h"

#include "backends/llvm/jit.h"
#include "ir/elementwise.h"

#include <fmt/format.h>
#include <functional>
#include <filesystem>
#include <llvm/BinaryFormat/Dwarf.h>
#include <llvm/IR/DIBuilder.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/Bitcode/BitcodeReader.h>
#include <llvm/IR/Module.h>
#include <llvm/Linker/Linker.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Transforms/IPO/Internalize.h>
#include <llvm/Transforms/Utils/Cloning.h>
#include <limits>
#include <optional>
#include <map>
#include <set>

// The kernels' bitcode (CMakeLists.txt, cmake/embed.cmake).
extern const unsigned char kiln_kernels_bitcode[];
extern const size_t kiln_kernels_bitcode_size;

namespace kiln::backends::llvm_backend {

namespace {

using ir::DType;
using ir::Node;
using ir::OpKind;
using ir::ValueId;
using Builder = llvm::IRBuilder<>;
using kiln::SourceLoc;

/// Columns per work item when a row is split: 16 KiB of f32.
constexpr int64_t kColumnBlock = 4096;
/// Below this many result elements per thread a step runs on one thread.
constexpr int64_t kMinElementsPerThread = 16384;

/// The scalar computation of one element from its operands' elements.
using ElementFn = std::function<llvm::Value *(Builder &, const std::vector<llvm::Value *> &)>;

// --- kiln's math, scalar (the vectoriser widens it) -------------------------

llvm::Value *f32(Builder &b, double v) { return llvm::ConstantFP::get(b.getFloatTy(), v); }

llvm::Value *selectLess(Builder &b, llvm::Value *x, double bound) {
  return b.CreateSelect(b.CreateFCmpOLT(x, f32(b, bound)), f32(b, bound), x);
}
llvm::Value *selectGreater(Builder &b, llvm::Value *x, double bound) {
  return b.CreateSelect(b.CreateFCmpOGT(x, f32(b, bound)), f32(b, bound), x);
}

/// e^x as backends/kernels/vector.h's fastExpFull16: x = n ln2 + r, e^r by
/// the Cephes polynomial, 2^n put into the exponent bits as two factors (n
/// up to 128 stays finite); +inf above ln(FLT_MAX), 0 below -87.3, NaN
/// stays NaN (the saturating conversion keeps n defined for it).
llvm::Value *emitExp(Builder &b, llvm::Value *x) {
  const double hi = 88.72283935546875;
  llvm::Value *c = selectLess(b, selectGreater(b, x, hi), -88.0);
  llvm::Value *t = b.CreateFAdd(b.CreateFMul(c, f32(b, 1.44269504088896341)), f32(b, 0.5));
  llvm::Value *ni = b.CreateIntrinsic(llvm::Intrinsic::fptosi_sat, {b.getInt32Ty(), b.getFloatTy()}, {t});
  llvm::Value *above = b.CreateFCmpOGT(b.CreateSIToFP(ni, b.getFloatTy()), t);
  ni = b.CreateSub(ni, b.CreateZExt(above, b.getInt32Ty()));
  llvm::Value *n = b.CreateSIToFP(ni, b.getFloatTy());
  llvm::Value *r = b.CreateFAdd(b.CreateFSub(c, b.CreateFMul(n, f32(b, 0.693359375))), b.CreateFMul(n, f32(b, 2.12194440e-4)));
  llvm::Value *p = f32(b, 1.9875691500e-4);
  for (double k : {1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1})
    p = b.CreateFAdd(b.CreateFMul(p, r), f32(b, k));
  llvm::Value *e = b.CreateFAdd(b.CreateFAdd(b.CreateFMul(b.CreateFMul(p, r), r), r), f32(b, 1.0));
  // n in [-127, 128] (NaN: 0): two factors of 2^(n/2), each a normal float.
  ni = b.CreateBinaryIntrinsic(llvm::Intrinsic::smax, b.CreateBinaryIntrinsic(llvm::Intrinsic::smin, ni, b.getInt32(128)), b.getInt32(-127));
  llvm::Value *half = b.CreateAShr(ni, 1), *rest = b.CreateSub(ni, half);
  auto power = [&](llvm::Value *k) { return b.CreateBitCast(b.CreateShl(b.CreateAdd(k, b.getInt32(127)), 23), b.getFloatTy()); };
  llvm::Value *scaled = b.CreateFMul(b.CreateFMul(e, power(half)), power(rest));
  scaled = b.CreateSelect(b.CreateFCmpOLT(x, f32(b, -87.3365447505531)), f32(b, 0.0), scaled);
  return b.CreateSelect(b.CreateFCmpOGT(x, f32(b, hi)), f32(b, std::numeric_limits<double>::infinity()), scaled);
}

/// tanh(x) = 1 - 2 / (e^(2x) + 1), x clamped to [-10, 10] (vector.h).
llvm::Value *emitTanh(Builder &b, llvm::Value *x) {
  llvm::Value *c = selectLess(b, selectGreater(b, x, 10.0), -10.0);
  llvm::Value *e = emitExp(b, b.CreateFAdd(c, c));
  return b.CreateFSub(f32(b, 1.0), b.CreateFDiv(f32(b, 2.0), b.CreateFAdd(e, f32(b, 1.0))));
}

/// sigmoid in the reference's overflow-free form: e = e^-|x|, then
/// 1 / (1 + e) for x >= 0 and e / (1 + e) below.
llvm::Value *emitSigmoid(Builder &b, llvm::Value *x) {
  llvm::Value *magnitude = b.CreateUnaryIntrinsic(llvm::Intrinsic::fabs, x);
  llvm::Value *e = emitExp(b, b.CreateFNeg(magnitude));
  llvm::Value *inv = b.CreateFDiv(f32(b, 1.0), b.CreateFAdd(f32(b, 1.0), e));
  return b.CreateSelect(b.CreateFCmpOGE(x, f32(b, 0.0)), inv, b.CreateFMul(e, inv));
}

/// erf by Abramowitz and Stegun 7.1.26, as vector.h's fastErf16.
llvm::Value *emitErf(Builder &b, llvm::Value *x) {
  llvm::Value *a = selectGreater(b, b.CreateUnaryIntrinsic(llvm::Intrinsic::fabs, x), 6.0);
  llvm::Value *t = b.CreateFDiv(f32(b, 1.0), b.CreateFAdd(f32(b, 1.0), b.CreateFMul(f32(b, 0.3275911), a)));
  llvm::Value *poly = f32(b, 1.061405429);
  for (double k : {-1.453152027, 1.421413741, -0.284496736, 0.254829592}) poly = b.CreateFAdd(f32(b, k), b.CreateFMul(t, poly));
  poly = b.CreateFMul(t, poly);
  llvm::Value *y = b.CreateFSub(f32(b, 1.0), b.CreateFMul(poly, emitExp(b, b.CreateFNeg(b.CreateFMul(a, a)))));
  return b.CreateSelect(b.CreateFCmpOLT(x, f32(b, 0.0)), b.CreateFNeg(y), y);
}

/// An f32 op of the elementwise family on scalars; nullptr for one that is
/// not (or not on f32).
llvm::Value *emitF32Op(Builder &b, OpKind op, const std::vector<llvm::Value *> &a) {
  switch (op) {
  case OpKind::Add: return b.CreateFAdd(a[0], a[1]);
  case OpKind::Sub: return b.CreateFSub(a[0], a[1]);
  case OpKind::Mul: return b.CreateFMul(a[0], a[1]);
  case OpKind::Div: return b.CreateFDiv(a[0], a[1]);
  case OpKind::Neg: return b.CreateFNeg(a[0]);
  case OpKind::Exp: return emitExp(b, a[0]);
  case OpKind::Log: return b.CreateUnaryIntrinsic(llvm::Intrinsic::log, a[0]);
  case OpKind::Tanh: return emitTanh(b, a[0]);
  case OpKind::Relu: return b.CreateSelect(b.CreateFCmpOGT(a[0], f32(b, 0.0)), a[0], f32(b, 0.0));
  case OpKind::Sigmoid: return emitSigmoid(b, a[0]);
  case OpKind::Sqrt: return b.CreateUnaryIntrinsic(llvm::Intrinsic::sqrt, a[0]);
  case OpKind::Erf: return emitErf(b, a[0]);
  case OpKind::TanhGrad: return b.CreateFMul(a[1], b.CreateFSub(f32(b, 1.0), b.CreateFMul(a[0], a[0])));
  case OpKind::SigmoidGrad: return b.CreateFMul(b.CreateFMul(a[1], a[0]), b.CreateFSub(f32(b, 1.0), a[0]));
  case OpKind::ReluGrad: return b.CreateSelect(b.CreateFCmpOGT(a[0], f32(b, 0.0)), a[1], f32(b, 0.0));
  default: return nullptr;
  }
}

bool isF32Op(OpKind op) {
  switch (op) {
  case OpKind::Add:
  case OpKind::Sub:
  case OpKind::Mul:
  case OpKind::Div:
  case OpKind::Neg:
  case OpKind::Exp:
  case OpKind::Log:
  case OpKind::Tanh:
  case OpKind::Relu:
  case OpKind::Sigmoid:
  case OpKind::Sqrt:
  case OpKind::Erf:
  case OpKind::TanhGrad:
  case OpKind::SigmoidGrad:
  case OpKind::ReluGrad: return true;
  default: return false;
  }
}

bool isComparison(OpKind op) {
  switch (op) {
  case OpKind::Equal:
  case OpKind::NotEqual:
  case OpKind::Less:
  case OpKind::LessEqual:
  case OpKind::Greater:
  case OpKind::GreaterEqual: return true;
  default: return false;
  }
}

/// a op b as the reference's std::equal_to<> etc. compute it: ordered
/// float comparisons (false with a NaN) except != (true with one); signed
/// i32; unsigned bytes for bool.
llvm::Value *emitComparison(Builder &b, OpKind op, DType t, llvm::Value *x, llvm::Value *y) {
  llvm::Value *c = nullptr;
  if (t == DType::F32) {
    switch (op) {
    case OpKind::Equal: c = b.CreateFCmpOEQ(x, y); break;
    case OpKind::NotEqual: c = b.CreateFCmpUNE(x, y); break;
    case OpKind::Less: c = b.CreateFCmpOLT(x, y); break;
    case OpKind::LessEqual: c = b.CreateFCmpOLE(x, y); break;
    case OpKind::Greater: c = b.CreateFCmpOGT(x, y); break;
    default: c = b.CreateFCmpOGE(x, y); break;
    }
  } else {
    bool s = t == DType::I32;
    switch (op) {
    case OpKind::Equal: c = b.CreateICmpEQ(x, y); break;
    case OpKind::NotEqual: c = b.CreateICmpNE(x, y); break;
    case OpKind::Less: c = s ? b.CreateICmpSLT(x, y) : b.CreateICmpULT(x, y); break;
    case OpKind::LessEqual: c = s ? b.CreateICmpSLE(x, y) : b.CreateICmpULE(x, y); break;
    case OpKind::Greater: c = s ? b.CreateICmpSGT(x, y) : b.CreateICmpUGT(x, y); break;
    default: c = s ? b.CreateICmpSGE(x, y) : b.CreateICmpUGE(x, y); break;
    }
  }
  return b.CreateZExt(c, b.getInt8Ty());
}

/// x converted from one dtype to another as the reference's convert<>:
/// to bool x != 0; f32 to i32 truncating, NaN to 0 and out of range
/// saturated; the rest as C++ converts.
llvm::Value *emitCast(Builder &b, llvm::Value *x, DType from, DType to) {
  if (from == to) return x;
  if (to == DType::Bool) {
    llvm::Value *nonzero = from == DType::F32 ? b.CreateFCmpUNE(x, f32(b, 0.0)) : b.CreateICmpNE(x, llvm::ConstantInt::get(x->getType(), 0));
    return b.CreateZExt(nonzero, b.getInt8Ty());
  }
  if (to == DType::F32) return from == DType::I32 ? b.CreateSIToFP(x, b.getFloatTy()) : b.CreateUIToFP(x, b.getFloatTy());
  // to i32
  if (from == DType::Bool) return b.CreateZExt(x, b.getInt32Ty());
  llvm::Value *low = f32(b, -2147483648.0), *high = f32(b, 2147483648.0);
  llvm::Value *t = b.CreateFPToSI(x, b.getInt32Ty()); // poison out of range: selected away below
  t = b.CreateSelect(b.CreateFCmpOLE(x, low), b.getInt32(static_cast<uint32_t>(INT32_MIN)), t);
  t = b.CreateSelect(b.CreateFCmpOGE(x, high), b.getInt32(INT32_MAX), t);
  return b.CreateSelect(b.CreateFCmpUNO(x, x), b.getInt32(0), t);
}

// --- the map of a node over its result ---------------------------------------

/// A strided view of a buffer over the map's iteration space: element
/// (i0, i1, ...) is at offset + sum of i_d strides[d] (in elements; a
/// stride of 0 along a dim the view broadcasts).
struct View {
  ValueId value;
  DType dtype;
  int64_t offset = 0;
  std::vector<int64_t> strides; ///< one per dim of the iteration space
};

/// The view of a value of `extents` read at the positions of a result of
/// `out` extents under numpy broadcasting.
View broadcastView(ValueId v, DType t, const std::vector<int64_t> &extents, const std::vector<int64_t> &out) {
  std::vector<int64_t> aligned = alignRank(extents, out.size()), dense = denseStrides(aligned);
  for (size_t d = 0; d < out.size(); ++d)
    if (aligned[d] != out[d]) dense[d] = 0;
  return {v, t, 0, dense};
}

/// The iteration space with adjacent dims merged where every view steps
/// through both as through one (stride[d] = stride[d+1] * extent[d+1]), and
/// dims of extent 1 dropped: the last merged dim is the contiguous row.
struct MergedSpace {
  std::vector<int64_t> dims;
  std::vector<std::vector<int64_t>> strides; ///< [view][dim]
};

MergedSpace mergeDims(const std::vector<int64_t> &shape, const std::vector<View> &views) {
  MergedSpace s;
  s.strides.assign(views.size(), {});
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !s.dims.empty();
    for (size_t j = 0; j < views.size() && merge; ++j)
      merge = s.strides[j].back() == views[j].strides[d] * shape[d];
    if (merge) {
      s.dims.back() *= shape[d];
      for (size_t j = 0; j < views.size(); ++j) s.strides[j].back() = views[j].strides[d];
      continue;
    }
    s.dims.push_back(shape[d]);
    for (size_t j = 0; j < views.size(); ++j) s.strides[j].push_back(views[j].strides[d]);
  }
  if (s.dims.empty()) {
    s.dims.push_back(1);
    for (auto &st : s.strides) st.push_back(0);
  }
  return s;
}

llvm::Type *elementType(Builder &b, DType t) {
  switch (t) {
  case DType::F32: return b.getFloatTy();
  case DType::I32: return b.getInt32Ty();
  case DType::Bool: return b.getInt8Ty();
  }
  return b.getFloatTy();
}

} // namespace

struct PlanModule::Impl {
  const ir::Graph &graph;
  const Plan &plan;
  std::unique_ptr<llvm::LLVMContext> context = std::make_unique<llvm::LLVMContext>();
  std::unique_ptr<llvm::Module> module;
  Builder b{*context};

  Impl(const ir::Graph &g, const Plan &p, const std::string &name) : graph(g), plan(p) {
    // No fast-math flags, not even contraction into FMAs: the reference
    // and the kernels (GCC in ISO C++ mode, -ffp-contract=off; the
    // bitcode likewise) round every operation, and so does this.
    module = std::make_unique<llvm::Module>(name, *context);
    // DWARF: every instruction carries the DSL location of the node it was
    // generated for (the compile unit is named after the first file).
    module->addModuleFlag(llvm::Module::Warning, "Debug Info Version", llvm::DEBUG_METADATA_VERSION);
    module->addModuleFlag(llvm::Module::Warning, "Dwarf Version", 5);
    debug = std::make_unique<llvm::DIBuilder>(*module);
    std::string first = "kiln";
    for (const Node &n : g.nodes())
      if (!n.locs.empty() && n.locs.front().known()) {
        first = n.locs.front().file;
        break;
      }
    unit = debug->createCompileUnit(llvm::dwarf::DW_LANG_C, fileOf(first), "kiln", /*isOptimized=*/true, "", 0);
    voidType = debug->createSubroutineType(debug->getOrCreateTypeArray({}));
  }

  // --- debug info ------------------------------------------------------------
  std::unique_ptr<llvm::DIBuilder> debug;
  llvm::DICompileUnit *unit = nullptr;
  llvm::DISubroutineType *voidType = nullptr;
  std::map<std::string, llvm::DIFile *> files;
  SourceLoc currentLoc; ///< of the node being emitted: what its instructions carry

  llvm::DIFile *fileOf(const std::string &path) {
    auto it = files.find(path);
    if (it != files.end()) return it->second;
    std::error_code ec;
    std::string directory = std::filesystem::current_path(ec).string();
    return files[path] = debug->createFile(path, directory);
  }

  static SourceLoc locOf(const Node &n) {
    return n.locs.empty() || !n.locs.front().known() ? SourceLoc{} : n.locs.front();
  }

  /// A function of the module whose subprogram is at currentLoc.
  llvm::Function *function(llvm::FunctionType *type, llvm::GlobalValue::LinkageTypes linkage, const std::string &name) {
    auto *f = llvm::Function::Create(type, linkage, name, *module);
    attachSubprogram(*f, currentLoc);
    return f;
  }

  void attachSubprogram(llvm::Function &f, const SourceLoc &loc) {
    llvm::DIFile *file = fileOf(loc.known() ? loc.file : unit->getFilename().str());
    unsigned line = loc.known() ? static_cast<unsigned>(loc.line) : 0;
    llvm::DISubprogram *sp = debug->createFunction(
        file, f.getName(), f.getName(), file, line, voidType, line, llvm::DINode::FlagZero,
        llvm::DISubprogram::SPFlagDefinition | llvm::DISubprogram::SPFlagOptimized);
    f.setSubprogram(sp);
  }

  llvm::DILocation *locationIn(llvm::Function *f, const SourceLoc &loc) {
    return llvm::DILocation::get(*context, loc.known() ? static_cast<unsigned>(loc.line) : 0,
                                 loc.known() ? static_cast<unsigned>(loc.col) : 0, f->getSubprogram());
  }

  /// Starts emitting f's body: its entry block, at currentLoc.
  void enter(llvm::Function *f) {
    b.SetInsertPoint(llvm::BasicBlock::Create(*context, "entry", f));
    b.SetCurrentDebugLocation(locationIn(f, currentLoc));
  }

  /// The kernels linked in from bitcode have no line info: each function
  /// reached from the calls of one step only gets that step's node
  /// location (so the kernel's instructions show as the DSL line of its
  /// node, inlined or not); one shared by several steps gets line 0.
  void attributeKernels(const std::vector<ir::NodeId> &stepNodes) {
    std::map<llvm::Function *, std::set<size_t>> reachedFrom;
    for (size_t k = 0; k < stepNodes.size(); ++k) {
      llvm::Function *step = module->getFunction(stepName(k));
      if (!step) continue;
      std::vector<llvm::Function *> work{step};
      while (!work.empty()) {
        llvm::Function *f = work.back();
        work.pop_back();
        for (llvm::BasicBlock &bb : *f)
          for (llvm::Instruction &inst : bb)
            if (auto *call = llvm::dyn_cast<llvm::CallBase>(&inst))
              if (llvm::Function *callee = call->getCalledFunction())
                if (!callee->isDeclaration() && !callee->getSubprogram() && reachedFrom[callee].insert(k).second)
                  work.push_back(callee);
      }
    }
    for (llvm::Function &f : *module) {
      if (f.isDeclaration() || f.getSubprogram()) continue;
      auto it = reachedFrom.find(&f);
      SourceLoc loc;
      if (it != reachedFrom.end() && it->second.size() == 1) {
        ir::NodeId node = stepNodes[*it->second.begin()];
        if (node >= 0) loc = locOf(graph.nodes()[static_cast<size_t>(node)]);
      }
      attachSubprogram(f, loc);
      llvm::DILocation *at = locationIn(&f, loc);
      for (llvm::BasicBlock &bb : f)
        for (llvm::Instruction &inst : bb) inst.setDebugLoc(at);
    }
  }

  llvm::FunctionCallee parallelFor() {
    llvm::Type *ptr = b.getPtrTy(), *i64 = b.getInt64Ty();
    return module->getOrInsertFunction("kiln_rt_parallel_for",
                                       llvm::FunctionType::get(b.getVoidTy(), {ptr, ptr, i64, i64}, false));
  }

  /// for (i = lo; i < hi; ++i) body(i), at the builder's position.
  void loop(llvm::Value *lo, llvm::Value *hi, const std::function<void(llvm::Value *)> &body) {
    llvm::Function *f = b.GetInsertBlock()->getParent();
    llvm::BasicBlock *pre = b.GetInsertBlock();
    llvm::BasicBlock *head = llvm::BasicBlock::Create(*context, "loop", f);
    llvm::BasicBlock *inside = llvm::BasicBlock::Create(*context, "body", f);
    llvm::BasicBlock *exit = llvm::BasicBlock::Create(*context, "done", f);
    b.CreateBr(head);
    b.SetInsertPoint(head);
    llvm::PHINode *i = b.CreatePHI(b.getInt64Ty(), 2, "i");
    i->addIncoming(lo, pre);
    b.CreateCondBr(b.CreateICmpSLT(i, hi), inside, exit);
    b.SetInsertPoint(inside);
    body(i);
    llvm::Value *next = b.CreateAdd(i, b.getInt64(1), "", /*HasNUW=*/true, /*HasNSW=*/true);
    i->addIncoming(next, b.GetInsertBlock());
    b.CreateBr(head);
    b.SetInsertPoint(exit);
  }

  /// if (cond) then() else otherwise(), at the builder's position.
  void ifElse(llvm::Value *cond, const std::function<void()> &then, const std::function<void()> &otherwise) {
    llvm::Function *f = b.GetInsertBlock()->getParent();
    llvm::BasicBlock *yes = llvm::BasicBlock::Create(*context, "then", f);
    llvm::BasicBlock *no = llvm::BasicBlock::Create(*context, "else", f);
    llvm::BasicBlock *join = llvm::BasicBlock::Create(*context, "join", f);
    b.CreateCondBr(cond, yes, no);
    b.SetInsertPoint(yes);
    then();
    b.CreateBr(join);
    b.SetInsertPoint(no);
    otherwise();
    b.CreateBr(join);
    b.SetInsertPoint(join);
  }

  llvm::Value *loadValuePointer(llvm::Value *values, ValueId v) {
    llvm::Value *slot = b.CreateConstInBoundsGEP1_64(b.getPtrTy(), values, static_cast<uint64_t>(v));
    return b.CreateLoad(b.getPtrTy(), slot, fmt::format("v{}", v));
  }

  /// Emits kiln_step_<step> computing result[e] = fn(operands at e) over
  /// the result's extents, each operand broadcast to them.
  void emitMap(size_t step, ValueId result, const std::vector<View> &operands, const ElementFn &fn) {
    const std::vector<int64_t> &out = plan.extents[result];
    View target{result, graph.type(result).dtype, 0, denseStrides(out)};
    emitStridedMap(step, out, target, operands, fn, /*zeroFirst=*/false);
  }

  /// The general form: over the iteration space `shape`, target[e] =
  /// fn(operands[e]), every one a strided view; with zeroFirst the target's
  /// whole buffer is zeroed first (slice_grad writes only a part of it).
  void emitStridedMap(size_t step, const std::vector<int64_t> &shape, const View &target,
                      const std::vector<View> &operands, const ElementFn &fn, bool zeroFirst) {
    std::vector<View> views{target};
    views.insert(views.end(), operands.begin(), operands.end());
    MergedSpace space = mergeDims(shape, views);
    size_t merged = space.dims.size();
    int64_t cols = space.dims.back(), rows = 1;
    for (size_t d = 0; d + 1 < merged; ++d) rows *= space.dims[d];
    int64_t total = rows * cols;
    // Long rows among few of them are cut into blocks of columns.
    int64_t block = rows < 64 && cols > kColumnBlock ? kColumnBlock : cols;
    int64_t colBlocks = cols == 0 ? 0 : (cols + block - 1) / block;
    int64_t items = rows * colBlocks;
    int64_t elementsPerItem = std::max<int64_t>(1, total / std::max<int64_t>(items, 1));
    int64_t minItems = std::max<int64_t>(1, kMinElementsPerThread / elementsPerItem);
    std::string name = stepName(step);
    llvm::Type *ptr = b.getPtrTy(), *i64 = b.getInt64Ty();
    auto constant = [&](int64_t v) { return b.getInt64(static_cast<uint64_t>(v)); };

    // The row function: view j's element c is at its row pointer +
    // c * its row stride, for c in [c0, c1); every pointer noalias.
    std::vector<llvm::Type *> rowParams(views.size(), ptr);
    rowParams.push_back(i64);
    rowParams.push_back(i64);
    auto *rowFn = function(llvm::FunctionType::get(b.getVoidTy(), rowParams, false),
                                         llvm::Function::InternalLinkage, name + ".row");
    rowFn->addFnAttr(llvm::Attribute::AlwaysInline);
    for (size_t j = 0; j < views.size(); ++j) rowFn->addParamAttr(static_cast<unsigned>(j), llvm::Attribute::NoAlias);
    {
      enter(rowFn);
      auto arg = [&](size_t k) { return rowFn->getArg(static_cast<unsigned>(k)); };
      auto at = [&](size_t j, llvm::Value *c) {
        int64_t stride = space.strides[j][merged - 1];
        llvm::Value *index = stride == 0 ? constant(0) : stride == 1 ? c : b.CreateMul(c, constant(stride));
        return b.CreateInBoundsGEP(elementType(b, views[j].dtype), arg(j), index);
      };
      loop(arg(views.size()), arg(views.size() + 1), [&](llvm::Value *c) {
        std::vector<llvm::Value *> loaded;
        for (size_t j = 1; j < views.size(); ++j) loaded.push_back(b.CreateLoad(elementType(b, views[j].dtype), at(j, c)));
        b.CreateStore(fn(b, loaded), at(0, c));
      });
      b.CreateRetVoid();
    }

    // The body over items [begin, end).
    auto *bodyFn = function(llvm::FunctionType::get(b.getVoidTy(), {ptr, i64, i64}, false),
                                          llvm::Function::InternalLinkage, name + ".body");
    {
      enter(bodyFn);
      llvm::Value *values = bodyFn->getArg(0);
      std::vector<llvm::Value *> bases;
      for (const View &v : views) bases.push_back(loadValuePointer(values, v.value));
      loop(bodyFn->getArg(1), bodyFn->getArg(2), [&](llvm::Value *item) {
        llvm::Value *row = b.CreateUDiv(item, constant(colBlocks));
        llvm::Value *c0 = b.CreateMul(b.CreateURem(item, constant(colBlocks)), constant(block));
        llvm::Value *c1 = b.CreateBinaryIntrinsic(llvm::Intrinsic::smin, b.CreateAdd(c0, constant(block)), constant(cols));
        // Each view's offset of this row: the row's index along each outer
        // merged dim times the view's stride there.
        std::vector<llvm::Value *> offsets;
        for (const View &v : views) offsets.push_back(constant(v.offset));
        llvm::Value *rest = row;
        for (size_t d = merged - 1; d-- > 0;) {
          llvm::Value *index = b.CreateURem(rest, constant(space.dims[d]));
          rest = b.CreateUDiv(rest, constant(space.dims[d]));
          for (size_t j = 0; j < views.size(); ++j)
            if (space.strides[j][d]) offsets[j] = b.CreateAdd(offsets[j], b.CreateMul(index, constant(space.strides[j][d])));
        }
        std::vector<llvm::Value *> args;
        for (size_t j = 0; j < views.size(); ++j)
          args.push_back(b.CreateInBoundsGEP(elementType(b, views[j].dtype), bases[j], offsets[j]));
        args.push_back(c0);
        args.push_back(c1);
        b.CreateCall(rowFn, args);
      });
      b.CreateRetVoid();
    }

    // The step: the body over all items, on the plan's threads.
    auto *stepFn = function(llvm::FunctionType::get(b.getVoidTy(), {ptr, ptr}, false),
                                          llvm::Function::ExternalLinkage, name);
    enter(stepFn);
    if (zeroFirst) {
      int64_t bytes = ir::numElements(plan.extents[target.value]) * static_cast<int64_t>(ir::dtypeSize(target.dtype));
      b.CreateMemSet(loadValuePointer(stepFn->getArg(0), target.value), b.getInt8(0), constant(bytes), llvm::MaybeAlign(4));
    }
    if (items > 0)
      b.CreateCall(parallelFor(), {bodyFn, stepFn->getArg(0), constant(items), constant(minItems)});
    b.CreateRetVoid();
  }

  /// A step function kiln_step_<step>(values, host) whose body `body`
  /// emits, single-threaded.
  void emitSerialStep(size_t step, const std::function<void(llvm::Value *values)> &body) {
    llvm::Type *ptr = b.getPtrTy();
    auto *stepFn = function(llvm::FunctionType::get(b.getVoidTy(), {ptr, ptr}, false),
                                          llvm::Function::ExternalLinkage, stepName(step));
    enter(stepFn);
    body(stepFn->getArg(0));
    b.CreateRetVoid();
  }

  /// positions: out[o, j, c] = j over x seen as [outer, len, inner].
  void emitPositions(size_t step, const Node &node) {
    const std::vector<int64_t> &e = plan.extents[node.result];
    size_t axis = static_cast<size_t>(ir::normalizeAxis(ir::axisAttr(node.attrs), e.size()));
    int64_t outer = product(e, 0, axis), len = e[axis], inner = product(e, axis + 1, e.size());
    ValueId r = node.result;
    emitSerialStep(step, [&](llvm::Value *values) {
      llvm::Value *out = loadValuePointer(values, r);
      loop(b.getInt64(0), b.getInt64(static_cast<uint64_t>(outer * len)), [&](llvm::Value *row) {
        llvm::Value *j = b.CreateTrunc(b.CreateURem(row, b.getInt64(static_cast<uint64_t>(len))), b.getInt32Ty());
        llvm::Value *base = b.CreateMul(row, b.getInt64(static_cast<uint64_t>(inner)));
        loop(b.getInt64(0), b.getInt64(static_cast<uint64_t>(inner)), [&](llvm::Value *c) {
          b.CreateStore(j, b.CreateInBoundsGEP(b.getInt32Ty(), out, b.CreateAdd(base, c)));
        });
      });
    });
  }

  /// cross_entropy and its gradient as the reference computes them, in
  /// double with libm's exp and log: per row the first maximum (as
  /// std::max_element), the sum of exp(x - max), then the row's loss
  /// max + log(sum) - x[label] (the mean over counted rows) or the gradient
  /// (softmax - onehot) dloss / counted rows. A row of label -1 does not
  /// count (its gradient is 0). Labels given as inputs are checked before
  /// the run; rows x classes is small (a batch of logits).
  void emitCrossEntropy(size_t step, const Node &node) {
    bool grad = node.op == OpKind::CrossEntropyGrad;
    const std::vector<int64_t> &e = plan.extents[node.operands[0]];
    int64_t rows = e[0], classes = e[1];
    ValueId logits = node.operands[0], labels = node.operands[1], r = node.result;
    ValueId dloss = grad ? node.operands[2] : -1;
    emitSerialStep(step, [&](llvm::Value *values) {
      llvm::Type *f64 = b.getDoubleTy(), *f32t = b.getFloatTy(), *i32 = b.getInt32Ty();
      llvm::Value *x = loadValuePointer(values, logits), *label = loadValuePointer(values, labels);
      llvm::Value *out = loadValuePointer(values, r);
      auto labelOf = [&](llvm::Value *row) { return b.CreateLoad(i32, b.CreateInBoundsGEP(i32, label, row)); };
      llvm::Value *total = b.CreateAlloca(f64), *counted = b.CreateAlloca(f64);
      b.CreateStore(llvm::ConstantFP::get(f64, 0.0), total);
      b.CreateStore(llvm::ConstantFP::get(f64, 0.0), counted);
      loop(b.getInt64(0), b.getInt64(static_cast<uint64_t>(rows)), [&](llvm::Value *row) {
        llvm::Value *counts = b.CreateUIToFP(b.CreateICmpSGE(labelOf(row), b.getInt32(0)), f64);
        b.CreateStore(b.CreateFAdd(b.CreateLoad(f64, counted), counts), counted);
      });
      llvm::Value *count = b.CreateLoad(f64, counted);
      llvm::Value *none = b.CreateFCmpOEQ(count, llvm::ConstantFP::get(f64, 0.0));
      llvm::Value *scale = nullptr;
      if (grad) {
        llvm::Value *g = b.CreateFPExt(b.CreateLoad(f32t, loadValuePointer(values, dloss)), f64);
        scale = b.CreateSelect(none, llvm::ConstantFP::get(f64, 0.0), b.CreateFDiv(g, count));
      }
      llvm::Value *mxSlot = b.CreateAlloca(f32t), *sumSlot = b.CreateAlloca(f64);
      loop(b.getInt64(0), b.getInt64(static_cast<uint64_t>(rows)), [&](llvm::Value *row) {
        llvm::Value *rowBase = b.CreateMul(row, b.getInt64(static_cast<uint64_t>(classes)));
        auto element = [&](llvm::Value *c) { return b.CreateInBoundsGEP(f32t, x, b.CreateAdd(rowBase, c)); };
        llvm::Value *target32 = labelOf(row);
        auto counts = [&] {
          b.CreateStore(b.CreateLoad(f32t, element(b.getInt64(0))), mxSlot);
          loop(b.getInt64(1), b.getInt64(static_cast<uint64_t>(classes)), [&](llvm::Value *c) {
            llvm::Value *mx = b.CreateLoad(f32t, mxSlot), *v = b.CreateLoad(f32t, element(c));
            b.CreateStore(b.CreateSelect(b.CreateFCmpOLT(mx, v), v, mx), mxSlot);
          });
          llvm::Value *mx = b.CreateFPExt(b.CreateLoad(f32t, mxSlot), f64);
          b.CreateStore(llvm::ConstantFP::get(f64, 0.0), sumSlot);
          auto shiftedExp = [&](llvm::Value *c) {
            llvm::Value *v = b.CreateFPExt(b.CreateLoad(f32t, element(c)), f64);
            // The reference's std::exp(row[c] - mx): a float minus a double.
            return b.CreateUnaryIntrinsic(llvm::Intrinsic::exp, b.CreateFSub(v, mx));
          };
          loop(b.getInt64(0), b.getInt64(static_cast<uint64_t>(classes)), [&](llvm::Value *c) {
            b.CreateStore(b.CreateFAdd(b.CreateLoad(f64, sumSlot), shiftedExp(c)), sumSlot);
          });
          llvm::Value *sum = b.CreateLoad(f64, sumSlot);
          llvm::Value *target = b.CreateSExt(target32, b.getInt64Ty());
          if (!grad) {
            llvm::Value *picked = b.CreateFPExt(b.CreateLoad(f32t, element(target)), f64);
            llvm::Value *loss = b.CreateFSub(b.CreateFAdd(mx, b.CreateUnaryIntrinsic(llvm::Intrinsic::log, sum)), picked);
            b.CreateStore(b.CreateFAdd(b.CreateLoad(f64, total), loss), total);
            return;
          }
          loop(b.getInt64(0), b.getInt64(static_cast<uint64_t>(classes)), [&](llvm::Value *c) {
            llvm::Value *p = b.CreateFDiv(shiftedExp(c), sum);
            llvm::Value *hot = b.CreateSelect(b.CreateICmpEQ(c, target), llvm::ConstantFP::get(f64, 1.0), llvm::ConstantFP::get(f64, 0.0));
            llvm::Value *d = b.CreateFPTrunc(b.CreateFMul(b.CreateFSub(p, hot), scale), f32t);
            b.CreateStore(d, b.CreateInBoundsGEP(f32t, out, b.CreateAdd(rowBase, c)));
          });
        };
        auto skipped = [&] {
          if (!grad) return;
          loop(b.getInt64(0), b.getInt64(static_cast<uint64_t>(classes)), [&](llvm::Value *c) {
            b.CreateStore(llvm::ConstantFP::get(f32t, 0.0), b.CreateInBoundsGEP(f32t, out, b.CreateAdd(rowBase, c)));
          });
        };
        ifElse(b.CreateICmpSGE(target32, b.getInt32(0)), counts, skipped);
      });
      if (!grad) {
        llvm::Value *mean = b.CreateSelect(none, llvm::ConstantFP::get(f64, 0.0), b.CreateFDiv(b.CreateLoad(f64, total), count));
        b.CreateStore(b.CreateFPTrunc(mean, f32t), out);
      }
    });
  }

  /// The node's operands, each broadcast to its result.
  std::vector<View> operandsOf(const Node &node) {
    std::vector<View> ops;
    for (ValueId v : node.operands) ops.push_back(broadcastView(v, graph.type(v).dtype, plan.extents[v], plan.extents[node.result]));
    return ops;
  }

  bool emitNode(size_t i, size_t step) {
    const Node &node = graph.nodes()[i];
    currentLoc = locOf(node);
    if (node.numResults() != 1) return false;
    ValueId r = node.result;
    DType rt = graph.type(r).dtype;
    if (ir::numElements(plan.extents[r]) == 0) return false; // the reference writes nothing
    OpKind op = node.op;
    if (isF32Op(op) && rt == DType::F32) {
      for (ValueId v : node.operands)
        if (graph.type(v).dtype != DType::F32) return false;
      emitMap(step, r, operandsOf(node), [op](Builder &bb, const std::vector<llvm::Value *> &a) { return emitF32Op(bb, op, a); });
      return true;
    }
    if ((op == OpKind::Add || op == OpKind::Sub || op == OpKind::Mul) && rt == DType::I32) {
      // i32 wraps, as the reference's narrowing of its 64-bit result does.
      emitMap(step, r, operandsOf(node), [op](Builder &bb, const std::vector<llvm::Value *> &a) -> llvm::Value * {
        if (op == OpKind::Add) return bb.CreateAdd(a[0], a[1]);
        if (op == OpKind::Sub) return bb.CreateSub(a[0], a[1]);
        return bb.CreateMul(a[0], a[1]);
      });
      return true;
    }
    if (isComparison(op)) {
      DType t = graph.type(node.operands[0]).dtype;
      emitMap(step, r, operandsOf(node),
              [op, t](Builder &bb, const std::vector<llvm::Value *> &a) { return emitComparison(bb, op, t, a[0], a[1]); });
      return true;
    }
    if (op == OpKind::Select) {
      emitMap(step, r, operandsOf(node), [](Builder &bb, const std::vector<llvm::Value *> &a) {
        return bb.CreateSelect(bb.CreateICmpNE(a[0], bb.getInt8(0)), a[1], a[2]);
      });
      return true;
    }
    if (op == OpKind::Constant) {
      double value = ir::attrFloat(op, node.attrs, "value");
      emitMap(step, r, {}, [value, rt](Builder &bb, const std::vector<llvm::Value *> &) -> llvm::Value * {
        if (rt == DType::F32) return f32(bb, value);
        if (rt == DType::I32) return bb.getInt32(static_cast<uint32_t>(static_cast<int32_t>(value)));
        return bb.getInt8(value != 0);
      });
      return true;
    }
    if (op == OpKind::Cast) {
      DType from = graph.type(node.operands[0]).dtype;
      emitMap(step, r, operandsOf(node), [from, rt](Builder &bb, const std::vector<llvm::Value *> &a) {
        return emitCast(bb, a[0], from, rt);
      });
      return true;
    }
    if (op == OpKind::Dropout && node.operands.size() == 1) { // inference: x itself
      emitMap(step, r, operandsOf(node), [](Builder &, const std::vector<llvm::Value *> &a) { return a[0]; });
      return true;
    }
    if (op == OpKind::Reshape) { // a copy: the planner made the others views
      int64_t n = ir::numElements(plan.extents[r]);
      View from{node.operands[0], rt, 0, {1}}, to{r, rt, 0, {1}};
      emitStridedMap(step, {n}, to, {from}, [](Builder &, const std::vector<llvm::Value *> &a) { return a[0]; }, false);
      return true;
    }
    if (op == OpKind::Transpose) {
      ir::Shape perm = ir::attrDims(node.attrs, "perm");
      std::vector<int64_t> inStrides = denseStrides(plan.extents[node.operands[0]]);
      View from{node.operands[0], rt, 0, {}};
      for (const ir::Dim &d : perm) from.strides.push_back(inStrides[static_cast<size_t>(d.value)]);
      emitMap(step, r, {from}, [](Builder &, const std::vector<llvm::Value *> &a) { return a[0]; });
      return true;
    }
    if (op == OpKind::Slice || op == OpKind::SliceGrad) {
      // slice reads a window of x; slice_grad writes dy into the same
      // window of a zeroed result: both a copy over the small tensor.
      bool grad = op == OpKind::SliceGrad;
      ValueId small = grad ? node.operands[0] : r, big = grad ? r : node.operands[0];
      const std::vector<int64_t> &smallExtents = plan.extents[small];
      size_t axis = static_cast<size_t>(ir::normalizeAxis(ir::axisAttr(node.attrs), smallExtents.size()));
      int64_t start = ir::attrInt(op, node.attrs, "start");
      std::vector<int64_t> bigStrides = denseStrides(plan.extents[big]);
      View window{big, rt, start * bigStrides[axis], bigStrides}, whole{small, rt, 0, denseStrides(smallExtents)};
      auto copy = [](Builder &, const std::vector<llvm::Value *> &a) { return a[0]; };
      if (grad) emitStridedMap(step, smallExtents, window, {whole}, copy, /*zeroFirst=*/true);
      else emitStridedMap(step, smallExtents, whole, {window}, copy, false);
      return true;
    }
    if (op == OpKind::Positions) {
      emitPositions(step, node);
      return true;
    }
    if (op == OpKind::CrossEntropy || op == OpKind::CrossEntropyGrad) {
      if (graph.value(node.operands[1]).kind == ir::ValueKind::Node) return false; // computed labels: the reference checks them
      emitCrossEntropy(step, node);
      return true;
    }
    if (op == OpKind::BroadcastTo) {
      emitMap(step, r, operandsOf(node), [](Builder &, const std::vector<llvm::Value *> &a) { return a[0]; });
      return true;
    }
    if (op == OpKind::Elementwise) {
      auto program = std::make_shared<ir::ElementwiseProgram>(
          ir::parseBody(ir::attrString(op, node.attrs, "body"), node.operands.size()));
      // A body with erf or exp goes to kiln's kernel: its 16-lane code runs
      // the transformer's GELU chains ([B,T,512]) in 3.3 ms where these
      // loops take 5.2 ms (bench --profile, 2026-12-03).
      for (const ir::ElementwiseProgram::Step &s : program->steps)
        if (!isF32Op(s.op) || s.op == OpKind::Erf || s.op == OpKind::Exp) return false;
      emitMap(step, r, operandsOf(node), [program](Builder &bb, const std::vector<llvm::Value *> &a) {
        std::vector<llvm::Value *> results;
        for (const ir::ElementwiseProgram::Step &s : program->steps) {
          std::vector<llvm::Value *> args;
          for (const ir::ElementwiseProgram::Ref &ref : s.args) args.push_back(ref.operand ? a[ref.index] : results[ref.index]);
          results.push_back(emitF32Op(bb, s.op, args));
        }
        return results.back();
      });
      return true;
    }
    return false;
  }

  bool kernelsCalled = false;

  void emitKernelCall(const KernelCall &call, size_t i, size_t step) {
    currentLoc = locOf(graph.nodes()[i]);
    llvm::Type *ptr = b.getPtrTy(), *i64 = b.getInt64Ty();
    auto *record = llvm::ConstantDataArray::get(*context, llvm::ArrayRef<uint64_t>(
                                                              reinterpret_cast<const uint64_t *>(call.args.data()), call.args.size()));
    auto *global = new llvm::GlobalVariable(*module, record->getType(), /*isConstant=*/true,
                                            llvm::GlobalValue::PrivateLinkage, record, stepName(step) + ".record");
    global->setUnnamedAddr(llvm::GlobalValue::UnnamedAddr::Global);
    (void)i64;
    llvm::FunctionCallee entry =
        module->getOrInsertFunction(call.entry, llvm::FunctionType::get(b.getVoidTy(), {ptr, ptr}, false));
    auto *stepFn = function(llvm::FunctionType::get(b.getVoidTy(), {ptr, ptr}, false),
                                          llvm::Function::ExternalLinkage, stepName(step));
    enter(stepFn);
    b.CreateCall(entry, {stepFn->getArg(0), global});
    b.CreateRetVoid();
    kernelsCalled = true;
  }

  void linkKernels() {
    llvm::MemoryBufferRef buffer(
        llvm::StringRef(reinterpret_cast<const char *>(kiln_kernels_bitcode), kiln_kernels_bitcode_size), "kiln_kernels");
    llvm::Expected<std::unique_ptr<llvm::Module>> kernels = llvm::parseBitcodeFile(buffer, *context);
    if (!kernels) {
      std::string text = llvm::toString(kernels.takeError());
      throw Error("LLVM: reading the kernels' bitcode built into kiln: " + text);
    }
    // The bitcode was built for baseline x86-64 (+avx512f); the plan's own
    // triple and layout win.
    (*kernels)->setTargetTriple(module->getTargetTriple());
    (*kernels)->setDataLayout(module->getDataLayout());
    if (llvm::Linker::linkModules(*module, std::move(*kernels), llvm::Linker::Flags::LinkOnlyNeeded))
      throw Error("LLVM: linking the kernels' bitcode into a plan failed (a kiln bug)");
  }

  /// Gives each step that calls a kernel its own copy of the kernel's
  /// functions (everything it calls or passes as a function pointer, such
  /// as the bodies of its parallel loops): each copy has one caller, so O3
  /// folds that step's record into it, and its code carries that step's
  /// DSL line.
  void cloneKernelsPerStep(size_t steps) {
    for (size_t k = 0; k < steps; ++k) {
      llvm::Function *step = module->getFunction(stepName(k));
      if (!step) continue;
      std::map<llvm::Function *, llvm::Function *> copies;
      std::function<llvm::Function *(llvm::Function *)> copyOf = [&](llvm::Function *f) -> llvm::Function * {
        if (auto it = copies.find(f); it != copies.end()) return it->second;
        llvm::ValueToValueMapTy map;
        llvm::Function *c = llvm::CloneFunction(f, map);
        c->setName(f->getName() + "." + stepName(k));
        c->setLinkage(llvm::GlobalValue::InternalLinkage);
        copies[f] = c;
        redirect(*c, copyOf);
        return c;
      };
      redirect(*step, copyOf);
    }
  }

  /// Points every use in f of a kernel function (defined, not a step or
  /// the entry) at copyOf(it).
  void redirect(llvm::Function &f, const std::function<llvm::Function *(llvm::Function *)> &copyOf) {
    for (llvm::BasicBlock &bb : f)
      for (llvm::Instruction &inst : bb)
        for (llvm::Use &use : inst.operands())
          if (auto *callee = llvm::dyn_cast<llvm::Function>(use.get()))
            if (!callee->isDeclaration() && !callee->getSubprogram() && callee != &f) use.set(copyOf(callee));
  }

  void finish(const std::vector<bool> &generated, const std::vector<ir::NodeId> &stepNodes) {
    emitEntry(generated, stepNodes);
    targetHost(*module); // the triple and data layout the kernels are linked to
    if (kernelsCalled) {
      linkKernels();
      cloneKernelsPerStep(generated.size());
    }
    // Only the entry and the steps are looked up; everything else may be
    // inlined, specialised and dropped.
    std::set<std::string> keep{kEntry};
    for (size_t k = 0; k < generated.size(); ++k) keep.insert(stepName(k));
    llvm::internalizeModule(*module, [&](const llvm::GlobalValue &g) {
      return g.isDeclaration() || keep.count(g.getName().str()) > 0;
    });
    attributeKernels(stepNodes);
    debug->finalize();
  }

  void emitEntry(const std::vector<bool> &generated, const std::vector<ir::NodeId> &stepNodes) {
    llvm::Type *ptr = b.getPtrTy();
    currentLoc = {};
    auto *entry = function(llvm::FunctionType::get(b.getVoidTy(), {ptr, ptr}, false),
                                         llvm::Function::ExternalLinkage, kEntry);
    enter(entry);
    llvm::FunctionCallee hostStep = module->getOrInsertFunction(
        "kiln_rt_step", llvm::FunctionType::get(b.getVoidTy(), {ptr, b.getInt64Ty()}, false));
    for (size_t k = 0; k < generated.size(); ++k) {
      // Each call at its node's line: inlined steps keep it as inlinedAt.
      ir::NodeId node = stepNodes[k];
      b.SetCurrentDebugLocation(locationIn(entry, node >= 0 ? locOf(graph.nodes()[static_cast<size_t>(node)]) : SourceLoc{}));
      if (generated[k]) b.CreateCall(module->getFunction(stepName(k)), {entry->getArg(0), entry->getArg(1)});
      else b.CreateCall(hostStep, {entry->getArg(1), b.getInt64(k)});
    }
    b.CreateRetVoid();
  }
};

PlanModule::PlanModule(const ir::Graph &g, const Plan &p, const std::string &name)
    : impl_(std::make_unique<Impl>(g, p, name)) {}
PlanModule::~PlanModule() = default;

bool PlanModule::emitNode(size_t i, size_t step) { return impl_->emitNode(i, step); }
void PlanModule::emitKernelCall(const KernelCall &call, size_t i, size_t step) { impl_->emitKernelCall(call, i, step); }
void PlanModule::finish(const std::vector<bool> &generated, const std::vector<ir::NodeId> &stepNodes) {
  impl_->finish(generated, stepNodes);
}
std::string PlanModule::stepName(size_t step) { return fmt::format("kiln_step_{}", step); }
std::unique_ptr<llvm::LLVMContext> PlanModule::takeContext() { return std::move(impl_->context); }
std::unique_ptr<llvm::Module> PlanModule::takeModule() { return std::move(impl_->module); }

} // namespace kiln::backends::llvm_backend
