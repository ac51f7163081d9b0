//===- backends/llvm/jit.cpp - LLVM's ORC JIT for kiln's modules ----------===//
//
// LLVM 19's APIs: orc::LLJITBuilder with a JITTargetMachineBuilder detected
// from the host, orc::absoluteSymbols for the runtime functions, the new
// pass manager's PassBuilder::buildPerModuleDefaultPipeline(O3).
//
//===----------------------------------------------------------------------===//
#include "backends/llvm/jit.h"

#include "backends/kernels/entries.h"
#include "backends/llvm/runtime.h"
#include "ir/diagnostic.h"

#include <fmt/format.h>
#include <optional>
#include <llvm/ExecutionEngine/Orc/Debugging/DebuggerSupport.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/TargetParser/Host.h>
#include <mutex>

namespace kiln::backends::llvm_backend {

namespace {

std::string errorText(llvm::Error e) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << e;
  return text;
}

template <typename T> T unwrap(llvm::Expected<T> value, const char *what) {
  if (!value) throw Error(fmt::format("LLVM: {}: {}", what, errorText(value.takeError())));
  if constexpr (std::is_reference_v<T>) return *value;
  else return std::move(*value);
}

void check(llvm::Error e, const char *what) {
  if (e) throw Error(fmt::format("LLVM: {}: {}", what, errorText(std::move(e))));
}

struct Jit {
  std::unique_ptr<llvm::orc::LLJIT> lljit;
  std::unique_ptr<llvm::TargetMachine> machine;
  std::unique_ptr<llvm::TargetMachine> pic; ///< for exported libraries, made on first use
  std::optional<llvm::orc::JITTargetMachineBuilder> builder;
  HostTarget target;
  uint64_t dylibs = 0;
  std::mutex mutex;
};

Jit &jit() {
  static Jit *instance = [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    auto *j = new Jit;
    auto builder = unwrap(llvm::orc::JITTargetMachineBuilder::detectHost(), "detecting the host CPU");
    builder.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
    j->target.triple = builder.getTargetTriple().str();
    j->target.cpu = builder.getCPU();
    j->target.features = builder.getFeatures().getString();
    j->machine = unwrap(builder.createTargetMachine(), "creating the target machine");
    j->builder = builder;
    j->lljit = unwrap(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(builder).create(), "creating the JIT");
    // gdb's JIT interface: the plans' code with its DWARF lines (the DSL's)
    // is registered with a debugger attached or attaching. Optional: a
    // process without the registration hook runs as well.
    llvm::consumeError(llvm::orc::enableDebuggerSupport(*j->lljit));
    // The runtime functions, by address; the C library's from the process.
    llvm::orc::SymbolMap runtime;
    auto define = [&](const char *name, void *address) {
      runtime[j->lljit->mangleAndIntern(name)] = {llvm::orc::ExecutorAddr::fromPtr(address),
                                                  llvm::JITSymbolFlags::Exported | llvm::JITSymbolFlags::Callable};
    };
    define("kiln_rt_parallel_for", reinterpret_cast<void *>(&kiln_rt_parallel_for));
    define("kiln_rt_step", reinterpret_cast<void *>(&kiln_rt_step));
    define("kiln_rt_index_error", reinterpret_cast<void *>(&kiln_rt_index_error));
    define("kiln_k_matmul", reinterpret_cast<void *>(&kiln_k_matmul));
    check(j->lljit->getMainJITDylib().define(llvm::orc::absoluteSymbols(std::move(runtime))),
          "defining the runtime functions");
    j->lljit->getMainJITDylib().addGenerator(
        unwrap(llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(j->lljit->getDataLayout().getGlobalPrefix()),
               "looking up the process's symbols"));
    return j;
  }();
  return *instance;
}

} // namespace

const HostTarget &hostTarget() { return jit().target; }

void targetHost(llvm::Module &m) {
  Jit &j = jit();
  m.setTargetTriple(j.target.triple);
  m.setDataLayout(j.lljit->getDataLayout());
  for (llvm::Function &f : m) {
    if (f.isDeclaration()) continue;
    f.addFnAttr("target-cpu", j.target.cpu);
    f.addFnAttr("target-features", j.target.features);
    // Unwind tables: a host step or kiln_rt_index_error may throw through
    // the generated frames to the caller of the plan.
    f.setUWTableKind(llvm::UWTableKind::Async);
  }
}

void optimize(llvm::Module &m) {
  Jit &j = jit();
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(j.machine.get());
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::ModulePassManager mpm = pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
  mpm.run(m, mam);
}

namespace {

void verify(llvm::Module &m) {
  std::string problems;
  llvm::raw_string_ostream os(problems);
  if (llvm::verifyModule(m, &os)) throw Error("LLVM: the generated module is malformed (a kiln bug): " + problems);
}

std::string emit(llvm::Module &m, llvm::CodeGenFileType type, bool pic = false) {
  Jit &j = jit();
  verify(m);
  llvm::SmallVector<char, 0> bytes;
  llvm::raw_svector_ostream os(bytes);
  llvm::legacy::PassManager pm;
  std::lock_guard<std::mutex> lock(j.mutex); // one TargetMachine for all
  if (pic && !j.pic) {
    llvm::orc::JITTargetMachineBuilder builder = *j.builder;
    builder.setRelocationModel(llvm::Reloc::PIC_);
    j.pic = unwrap(builder.createTargetMachine(), "creating the target machine for position-independent code");
  }
  llvm::TargetMachine *machine = pic ? j.pic.get() : j.machine.get();
  if (machine->addPassesToEmitFile(pm, os, nullptr, type))
    throw Error("LLVM: the target cannot emit this kind of file");
  pm.run(m);
  return std::string(bytes.begin(), bytes.end());
}

} // namespace

std::string emitObject(llvm::Module &m) { return emit(m, llvm::CodeGenFileType::ObjectFile); }
std::string emitPicObject(llvm::Module &m) { return emit(m, llvm::CodeGenFileType::ObjectFile, /*pic=*/true); }
std::string emitAssembly(llvm::Module &m) { return emit(m, llvm::CodeGenFileType::AssemblyFile); }

std::unique_ptr<CompiledModule> loadObject(const std::string &object) {
  Jit &j = jit();
  auto result = std::unique_ptr<CompiledModule>(new CompiledModule);
  llvm::Error added = llvm::Error::success();
  {
    std::lock_guard<std::mutex> lock(j.mutex);
    llvm::orc::JITDylib &dylib =
        unwrap(j.lljit->createJITDylib(fmt::format("kiln.plan.{}", j.dylibs++)), "creating a dylib");
    dylib.addToLinkOrder(j.lljit->getMainJITDylib());
    result->dylib_ = &dylib; // removed by the destructor, also when adding fails
    added = j.lljit->addObjectFile(dylib, llvm::MemoryBuffer::getMemBufferCopy(object, "kiln plan"));
  }
  check(std::move(added), "adding an object"); // outside the lock: the destructor takes it
  return result;
}

void *CompiledModule::lookup(const std::string &name) const {
  Jit &j = jit();
  std::lock_guard<std::mutex> lock(j.mutex);
  auto *dylib = static_cast<llvm::orc::JITDylib *>(dylib_);
  llvm::orc::ExecutorAddr address = unwrap(j.lljit->lookup(*dylib, name), "looking up a generated function");
  return address.toPtr<void *>();
}

CompiledModule::~CompiledModule() {
  if (!dylib_) return;
  Jit &j = jit();
  std::lock_guard<std::mutex> lock(j.mutex);
  llvm::consumeError(j.lljit->getExecutionSession().removeJITDylib(*static_cast<llvm::orc::JITDylib *>(dylib_)));
}

} // namespace kiln::backends::llvm_backend
