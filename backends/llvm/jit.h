//===- backends/llvm/jit.h - LLVM's ORC JIT for kiln's modules --*- C++ -*-===//
//
// One ORC LLJIT per process, for the host CPU (its name and features, so
// AVX-512 where present), into which each compiled plan goes as a JITDylib
// of its own: the plan's functions are looked up by name there, and the
// whole dylib is removed when the plan is dropped from its executable's
// cache. Modules are optimised with LLVM's new pass manager at O3 before
// they are added. The runtime functions the generated code calls
// (kiln_rt_*, backends/llvm/runtime.h) and the C library's are resolved in
// every dylib.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llvm {
class LLVMContext;
class Module;
class Function;
} // namespace llvm

namespace kiln::backends::llvm_backend {

/// The host CPU as the generated code is built for.
struct HostTarget {
  std::string triple;
  std::string cpu;      ///< e.g. "icelake-server"
  std::string features; ///< LLVM's feature string, "+avx512f,..."
};
const HostTarget &hostTarget();

/// Sets the host CPU's name and features on every function of m, and the
/// module's triple and data layout, before it is optimised.
void targetHost(llvm::Module &m);

/// Runs LLVM's O3 pipeline on m for the host CPU.
void optimize(llvm::Module &m);

/// A compiled module: the addresses of its functions, alive as long as
/// this object.
class CompiledModule {
public:
  ~CompiledModule();
  CompiledModule(const CompiledModule &) = delete;
  CompiledModule &operator=(const CompiledModule &) = delete;
  /// The address of the function `name`; kiln::Error when there is none.
  void *lookup(const std::string &name) const;

private:
  friend std::unique_ptr<CompiledModule> loadObject(const std::string &object);
  CompiledModule() = default;
  void *dylib_ = nullptr; ///< the llvm::orc::JITDylib
};

/// The machine code of m (verified, already optimised) as an object file
/// for the host, or as assembly text.
std::string emitObject(llvm::Module &m);
/// The same as position-independent code, to link into a shared library.
std::string emitPicObject(llvm::Module &m);
std::string emitAssembly(llvm::Module &m);

/// JIT-links an object file made by emitObject (possibly by an earlier
/// process: the compile cache); kiln::Error when it cannot be linked.
std::unique_ptr<CompiledModule> loadObject(const std::string &object);

} // namespace kiln::backends::llvm_backend
