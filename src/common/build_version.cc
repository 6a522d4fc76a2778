#include "common/build_version.h"

#ifndef TRANCHE_VERSION
#define TRANCHE_VERSION "0.0.0-dev"
#endif

namespace tranche {

std::string build_version() { return TRANCHE_VERSION; }

}  // namespace tranche
