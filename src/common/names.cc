#include "common/names.h"

namespace tranche {

namespace {
bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
}  // namespace

bool is_valid_name(std::string_view name) {
  if (name.empty() || name.size() > 63) {
    return false;
  }
  if (!is_lower_alnum(name.front()) || !is_lower_alnum(name.back())) {
    return false;
  }
  for (char c : name) {
    if (!is_lower_alnum(c) && c != '-') {
      return false;
    }
  }
  return true;
}

Status check_name(std::string_view name, std::string_view field) {
  if (is_valid_name(name)) {
    return {};
  }
  return fail(
      ErrorCode::kUnprocessable,
      "'" + std::string(name) +
          "' is not a valid name (1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)",
      std::string(field));
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t slash = path.find('/', start);
    const size_t end = slash == std::string_view::npos ? path.size() : slash;
    if (end > start) {
      parts.emplace_back(path.substr(start, end - start));
    }
    if (slash == std::string_view::npos) {
      break;
    }
    start = slash + 1;
  }
  return parts;
}

}  // namespace tranche
