// The manifest parser (model/manifest.h) on arbitrary text, in the format
// TRANCHE_FUZZ_FORMAT names (one executable per format, so that each keeps a
// corpus of its own syntax). Besides "no crash, leak or sanitizer report": a
// manifest that parses round-trips through its normalized document, as
// manifest.h promises, and its diff against itself is empty.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <nlohmann/json.hpp>

#include "model/manifest.h"

namespace {

constexpr tranche::ManifestFormat kFormat = tranche::ManifestFormat::TRANCHE_FUZZ_FORMAT;

[[noreturn]] void broken(const char* what, const nlohmann::json& doc) {
  std::fprintf(stderr, "manifest invariant broken: %s\n%s\n", what, doc.dump(2).c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto spec = tranche::parse_manifest(text, kFormat);
  if (!spec) {
    return 0;
  }
  const nlohmann::json doc = tranche::to_json(*spec);
  const auto again = tranche::parse_manifest(doc.dump(), tranche::ManifestFormat::kJson);
  if (!again) {
    broken(("its normalized document does not parse: " + again.error().describe()).c_str(), doc);
  }
  if (tranche::to_json(*again) != doc) {
    broken("its normalized document parses to another one", doc);
  }
  if (!tranche::diff_summary(&*spec, *again).empty()) {
    broken("it differs from its own normalized document", doc);
  }
  return 0;
}
