# tests/fuzz/targets.cmake - the fuzz targets and the kiln libraries each one
# links; shared by the fuzz build (tests/fuzz/CMakeLists.txt) and the replay
# executables of the normal builds (tests/CMakeLists.txt). scripts/fuzz
# reads the list from the line below, so keep it on one line.
set(kKilnFuzzTargets dsl ir safetensors checkpoint data metrics)
set(kKilnFuzzLibs_dsl kiln_frontend kiln_ir)
set(kKilnFuzzLibs_ir kiln_passes kiln_ir)
set(kKilnFuzzLibs_safetensors kiln_runtime kiln_ir)
set(kKilnFuzzLibs_checkpoint kiln_runtime kiln_ir)
set(kKilnFuzzLibs_data kiln_runtime kiln_ir)
set(kKilnFuzzLibs_metrics kiln_runtime kiln_ir)
# Sources a target compiles besides its entry point: the metrics target
# draws pages, which is the kiln driver's code, not a library's.
set(kKilnFuzzSources_metrics ${CMAKE_SOURCE_DIR}/tools/report_page.cpp)
