//===- backends/llvm/jit.cpp - LLVM's ORC JIT for kiln's modules ----------===//
//
// LLVM 19's APIs: orc::LLJITBuilder with a JITTargetMachineBuilder detected
// from the host, orc::absoluteSymbols for the runtime functions, the new
// pass manager's PassBuilder::buildPerModuleDefaultPipeline(O3).
//
//===----------------------------------------------------------------------===//
#include "backends/llvm/jit.h"

#include "backends/llvm/runtime.h"
#include "ir/diagnostic.h"

#include <fmt/format.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Passes/PassBuilder.h>
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
    j->lljit = unwrap(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(builder).create(), "creating the JIT");
    // The runtime functions, by address; the C library's from the process.
    llvm::orc::SymbolMap runtime;
    auto define = [&](const char *name, void *address) {
      runtime[j->lljit->mangleAndIntern(name)] = {llvm::orc::ExecutorAddr::fromPtr(address),
                                                  llvm::JITSymbolFlags::Exported | llvm::JITSymbolFlags::Callable};
    };
    define("kiln_rt_parallel_for", reinterpret_cast<void *>(&kiln_rt_parallel_for));
    define("kiln_rt_step", reinterpret_cast<void *>(&kiln_rt_step));
    define("kiln_rt_index_error", reinterpret_cast<void *>(&kiln_rt_index_error));
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

std::unique_ptr<CompiledModule> compileModule(std::unique_ptr<llvm::LLVMContext> context,
                                              std::unique_ptr<llvm::Module> m) {
  Jit &j = jit();
  std::string problems;
  llvm::raw_string_ostream os(problems);
  if (llvm::verifyModule(*m, &os)) throw Error("LLVM: the generated module is malformed (a kiln bug): " + problems);
  std::lock_guard<std::mutex> lock(j.mutex);
  auto result = std::unique_ptr<CompiledModule>(new CompiledModule);
  llvm::orc::JITDylib &dylib = unwrap(j.lljit->createJITDylib(fmt::format("kiln.plan.{}", j.dylibs++)), "creating a dylib");
  dylib.addToLinkOrder(j.lljit->getMainJITDylib());
  check(j.lljit->addIRModule(dylib, llvm::orc::ThreadSafeModule(std::move(m), std::move(context))), "adding a module");
  result->dylib_ = &dylib;
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
