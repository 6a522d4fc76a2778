// The pieces every reader of the manifest uses (manifest_readers.h): the
// rejection's helpers, field paths and value descriptions for messages, and
// the typed readers of single values.
#include "model/manifest_readers.h"

#include <climits>
#include <cmath>
#include <cstdint>
#include <utility>

#include "common/names.h"

namespace tranche::manifest_detail {

[[noreturn]] void reject(std::string field, std::string message) {
  throw Rejection{Error{ErrorCode::kUnprocessable, std::move(message), std::move(field)}};
}

[[noreturn]] void reject_syntax(std::string message) {
  throw Rejection{Error{ErrorCode::kInvalid, std::move(message), {}}};
}

void ensure(const Status& status) {
  if (!status) {
    throw Rejection{status.error()};
  }
}

// ---------------------------------------------------------------------------
// Paths and value descriptions for messages.

std::string field_path(std::string_view base, std::string_view key) {
  std::string out(base);
  if (!out.empty()) {
    out += '.';
  }
  out += key;
  return out;
}

std::string item_path(std::string_view list_path, size_t index) {
  return std::string(list_path) + "[" + std::to_string(index) + "]";
}

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "mapping";
    case json::value_t::array:
      return "list";
    case json::value_t::string:
      return "string";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "number";
    default:
      return "unsupported value";
  }
}

std::string format_number(double x) {
  if (!std::isfinite(x)) {
    return std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf");
  }
  return json(x).dump();
}

std::string format_int_or_percent(const IntOrPercent& v) { return std::to_string(v.value) + (v.percent ? "%" : ""); }

// ---------------------------------------------------------------------------
// Typed readers. Each takes the value and its path, and rejects with that path.

std::string read_string(const json& v, const std::string& path) {
  if (!v.is_string()) {
    std::string message = "expected a string, got " + type_name(v);
    if (v.is_number() || v.is_boolean()) {
      message += " (quote it)";
    }
    reject(path, std::move(message));
  }
  const auto& s = v.get_ref<const std::string&>();
  if (s.find('\0') != std::string::npos) {
    reject(path, "must not contain NUL characters");
  }
  return s;
}

std::string read_nonempty_string(const json& v, const std::string& path) {
  std::string s = read_string(v, path);
  if (s.empty()) {
    reject(path, "must not be empty");
  }
  return s;
}

int read_int(const json& v, const std::string& path) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(INT_MAX)) {
      reject(path, std::to_string(u) + " is out of range");
    }
    return static_cast<int>(u);
  }
  if (v.is_number_integer()) {
    const auto i = v.get<std::int64_t>();
    if (i < INT_MIN || i > INT_MAX) {
      reject(path, std::to_string(i) + " is out of range");
    }
    return static_cast<int>(i);
  }
  if (v.is_number_float()) {
    reject(path, "expected an integer, got " + format_number(v.get<double>()));
  }
  reject(path, "expected an integer, got " + type_name(v));
}

int read_int_at_least(const json& v, const std::string& path, int minimum) {
  const int x = read_int(v, path);
  if (x < minimum) {
    reject(path, "must be at least " + std::to_string(minimum) + ", got " + std::to_string(x));
  }
  return x;
}

double read_nonnegative_number(const json& v, const std::string& path) {
  if (!v.is_number()) {
    reject(path, "expected a number, got " + type_name(v));
  }
  const double x = v.get<double>();
  if (!std::isfinite(x)) {
    reject(path, "must be a finite number, got " + format_number(x));
  }
  if (x < 0) {
    reject(path, "must be at least 0, got " + format_number(x));
  }
  return x;
}

const json& read_list(const json& v, const std::string& path) {
  if (!v.is_array()) {
    reject(path, "expected a list, got " + type_name(v));
  }
  return v;
}

std::string read_name(const json& v, const std::string& path) {
  std::string name = read_string(v, path);
  ensure(check_name(name, path));
  return name;
}

std::vector<std::string> read_name_list(const json& v, const std::string& path) {
  std::vector<std::string> names;
  const json& list = read_list(v, path);
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = item_path(path, i);
    std::string name = read_name(list[i], at);
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      reject(at, "'" + name + "' is listed twice");
    }
    names.push_back(std::move(name));
  }
  return names;
}

// An argv array: the agent execs it directly, never through a shell.
std::vector<std::string> read_command(const json& v, const std::string& path) {
  const json& list = read_list(v, path);
  if (list.empty()) {
    reject(path, "must not be empty: give the program and its arguments");
  }
  std::vector<std::string> argv;
  for (size_t i = 0; i < list.size(); ++i) {
    argv.push_back(read_string(list[i], item_path(path, i)));
  }
  if (argv.front().empty()) {
    reject(item_path(path, 0), "the program name must not be empty");
  }
  return argv;
}

std::map<std::string, std::string> read_string_map(const json& v, const std::string& path) {
  if (!v.is_object()) {
    reject(path, "expected a mapping, got " + type_name(v));
  }
  std::map<std::string, std::string> out;
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (it.key().empty()) {
      reject(path, "keys must not be empty");
    }
    out.emplace(it.key(), read_string(it.value(), field_path(path, it.key())));
  }
  return out;
}

}  // namespace tranche::manifest_detail
