//===- tools/report_page.h - the page of a training run ----------*- C++ -*-===//
//
// One self-contained HTML file (inline CSS and SVG; no script, no URL of any
// kind) drawn from a metrics log alone, so that the page kiln train
// --report writes and the one kiln report writes are the same bytes.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/metrics_log.h"

#include <string>

namespace kiln::tools {

/// The page of a run: plots of the step losses (raw and smoothed, epoch
/// boundaries marked), the per-epoch losses and validation metrics, the
/// learning rate, and the validation confusion matrix; the run's recipe
/// and a table of its epochs. Every piece of user text is escaped.
///
/// The step-loss plot can be read back: its raw polylines (class "raw")
/// hold one point per step, to 2 decimals of a pixel, and their group
/// carries the mapping from data to pixels as data-x and data-y =
/// "d0 d1 p0 p1" (the data values d0, d1 sit at pixels p0, p1).
/// tests/lit/report.test reads it.
std::string reportPage(const runtime::MetricsLog &log);

} // namespace kiln::tools
