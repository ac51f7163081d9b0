//===- backends/llvm/runtime.cpp - what generated code calls --------------===//
#include "backends/llvm/runtime.h"

#include "backends/common/planned_executable.h"

extern "C" void kiln_rt_step(void *host, int64_t k) {
  auto *context = static_cast<kiln::backends::llvm_backend::HostContext *>(host);
  context->plan->steps[static_cast<size_t>(k)].run();
}
