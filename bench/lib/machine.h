#pragma once
// What every benchmark says about where it ran, in its table and its JSON
// line: the CPU model and count, and the build type (sanitized or not).

#include <string>

namespace tranche::bench {

// "Intel(R) Xeon(R) Processor, 2 CPUs"
std::string machine();
// CMAKE_BUILD_TYPE of the benchmark's build, " (ASan+UBSan)" added when sanitized.
std::string build_type();

}  // namespace tranche::bench
