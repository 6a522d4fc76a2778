#include "machine.h"

#include <unistd.h>

#include <fstream>

#ifndef TRANCHE_BENCH_BUILD_TYPE
#define TRANCHE_BENCH_BUILD_TYPE "unknown"
#endif

namespace tranche::bench {

std::string machine() {
  std::string model = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.starts_with("model name")) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        model = line.substr(colon + 1);
        model.erase(0, model.find_first_not_of(" \t"));
      }
      break;
    }
  }
  return model + ", " + std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs";
}

std::string build_type() {
  std::string build = TRANCHE_BENCH_BUILD_TYPE;
#ifdef TRANCHE_BENCH_SANITIZED
  build += " (ASan+UBSan)";
#endif
  return build;
}

}  // namespace tranche::bench
