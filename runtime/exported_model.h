//===- runtime/exported_model.h - the run time of an exported model -*- C++ -*-===//
//
// What a library made by `kiln export` runs on, besides its plans' code:
// the C functions its generated glue (tools/export.cpp) forwards each
// NAME_* function of its C API to, with the model's descriptor (a JSON
// text compiled into the library: vocabulary, labels, tokenizer settings,
// training recipe, and per plan the layout of its values) and the plans'
// entry functions. Built into a static archive of position-independent
// code, libkiln_export_rt.a, that the export links into every library
// (with the checkpoint, tokenizer and JSON code of kiln's runtime, and fmt
// header-only), so an exported library needs nothing of kiln at run time.
// The layout of the descriptor is written at its producer, exportModel in
// tools/export.cpp.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <stddef.h>
#include <stdint.h>

// The glue that tools/export.cpp generates repeats these declarations in C
// (it is compiled where kiln's headers are not); change both together.
extern "C" {
typedef void (*kiln_x_entry)(void *const *values, void *unused);

/// A model with the checkpoint's parameters (and optimizer state, when a
/// training step is exported); NULL on error (kiln_x_last_error says why).
void *kiln_x_load(const char *descriptor, size_t size, kiln_x_entry infer, kiln_x_entry train, const char *checkpoint);
const char *kiln_x_last_error(void);
int64_t kiln_x_classes(const void *model);
const char *kiln_x_label(const void *model, int64_t k);
/// 1 + the number of inputs the model derives from the tokens: the
/// planes of ids per text that tokenize writes and predict/train_step read.
int64_t kiln_x_planes(const void *model);
int64_t kiln_x_tokenize(const void *model, const char *utf8, int32_t *ids, int64_t maxLen);
int kiln_x_predict(void *model, const int32_t *ids, int64_t batch, int64_t len, float *probs);
int kiln_x_train_step(void *model, const int32_t *ids, const int32_t *labels, int64_t batch, int64_t len, float *loss);
int kiln_x_save(void *model, const char *checkpoint);
void kiln_x_free(void *model);
}
