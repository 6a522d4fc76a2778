#pragma once
// Checked reading of agent-protocol JSON, for messages.cc only: a Reader
// reads the fields of one object and remembers the first problem, naming
// the field, so that a decoder reads straight through and reports once. It
// never throws.

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace tranche::protocol {

inline constexpr int64_t kIntMax = std::numeric_limits<int>::max();
inline constexpr int64_t kIntMin = std::numeric_limits<int>::min();
inline constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
inline constexpr int64_t kPidMax = kIntMax;  // pid_t
inline constexpr int64_t kPortMax = 65535;
inline constexpr int64_t kGraceMax = kIntMax;  // ms: about 24 days, far beyond any sensible grace

// Reads fields of one object, remembering the first problem so that a parse
// function reads straight through and reports once. Never throws: every
// value is checked for its type (and integers for their range) before it
// is read. For optional fields null is the same as absent.
class Reader {
  using json = nlohmann::json;

 public:
  Reader(const json& j, std::string prefix) : j_(j), prefix_(std::move(prefix)) {
    if (!j_.is_object()) {
      fail_at("", "expected an object");
    }
  }

  std::string str(const char* key, bool required = true) {
    const json* v = find(key, required);
    if (!v || (!required && v->is_null())) {
      return {};
    }
    if (!v->is_string()) {
      fail_at(key, "expected a string");
      return {};
    }
    return v->get<std::string>();
  }
  // A required string that must not be empty.
  std::string nonempty_str(const char* key) {
    std::string s = str(key);
    if (s.empty() && ok()) {
      fail_at(key, "must not be empty");
    }
    return s;
  }
  std::optional<int64_t> integer(const char* key, bool required, int64_t min, int64_t max) {
    const json* v = find(key, required);
    if (!v || (!required && v->is_null())) {
      return std::nullopt;
    }
    return checked_integer(*v, key, min, max);
  }
  std::optional<uint64_t> unsigned_integer(const char* key, bool required) {
    const json* v = find(key, required);
    if (!v || (!required && v->is_null())) {
      return std::nullopt;
    }
    if (v->is_number_unsigned()) {
      return v->get<uint64_t>();
    }
    if (v->is_number_integer()) {
      fail_at(key, "must not be negative");
    } else {
      fail_at(key, "expected an integer");
    }
    return std::nullopt;
  }
  std::optional<double> number(const char* key, bool required) {
    const json* v = find(key, required);
    if (!v || (!required && v->is_null())) {
      return std::nullopt;
    }
    if (!v->is_number()) {
      fail_at(key, "expected a number");
      return std::nullopt;
    }
    return v->get<double>();
  }
  bool boolean(const char* key) {
    const json* v = find(key, true);
    if (v && !v->is_boolean()) {
      fail_at(key, "expected true or false");
      return false;
    }
    return v && v->get<bool>();
  }
  std::map<std::string, std::string> string_map(const char* key) {
    std::map<std::string, std::string> out;
    const json* v = find(key, false);
    if (!v || v->is_null()) {
      return out;
    }
    if (!v->is_object()) {
      fail_at(key, "expected an object");
      return out;
    }
    for (const auto& [k, value] : v->items()) {
      if (!value.is_string()) {
        fail_at(std::string(key) + "." + k, "expected a string");
        return out;
      }
      out[k] = value.get<std::string>();
    }
    return out;
  }
  // Port name -> 1..65535; nullopt when absent or null.
  std::optional<std::map<std::string, int>> port_map(const char* key) {
    const json* v = find(key, false);
    if (!v || v->is_null()) {
      return std::nullopt;
    }
    if (!v->is_object()) {
      fail_at(key, "expected an object of port numbers");
      return std::nullopt;
    }
    std::map<std::string, int> out;
    for (const auto& [k, value] : v->items()) {
      const std::string field = std::string(key) + "." + k;
      auto port = checked_integer(value, field, 1, kPortMax, "expected a port number");
      if (!port) {
        return std::nullopt;
      }
      out[k] = static_cast<int>(*port);
    }
    return out;
  }
  std::vector<std::string> string_list(const char* key, bool required = false) {
    std::vector<std::string> out;
    const json* v = find(key, required);
    if (!v || (!required && v->is_null())) {
      return out;
    }
    if (!v->is_array()) {
      fail_at(key, "expected an array of strings");
      return out;
    }
    for (size_t i = 0; i < v->size(); ++i) {
      if (!(*v)[i].is_string()) {
        fail_at(std::string(key) + "[" + std::to_string(i) + "]", "expected a string");
        return out;
      }
      out.push_back((*v)[i].get<std::string>());
    }
    return out;
  }
  // Calls `each(item_json, path)` for every element of an optional array.
  template <class F>
  void array(const char* key, F each) {
    const json* v = find(key, false);
    if (!v || v->is_null()) {
      return;
    }
    if (!v->is_array()) {
      fail_at(key, "expected an array");
      return;
    }
    for (size_t i = 0; i < v->size() && !error_; ++i) {
      each((*v)[i], path(key) + "[" + std::to_string(i) + "]");
    }
  }
  // An optional value of any type; nullptr when absent (null is returned).
  const json* raw(const char* key) { return find(key, false); }
  std::string path(const std::string& key) const { return key.empty() ? prefix_ : prefix_ + "." + key; }

  void fail_at(const std::string& key, const std::string& message) {
    if (!error_) {
      error_ = Error{ErrorCode::kInvalid, message, path(key)};
    }
  }
  void absorb(const Error& e) {
    if (!error_) {
      error_ = e;
    }
  }
  template <class T>
  void absorb(const Result<T>& r) {
    if (!r) {
      absorb(r.error());
    }
  }
  bool ok() const { return !error_; }
  template <class T>
  Result<T> done(T value) {
    if (error_) {
      return std::unexpected(*error_);
    }
    return value;
  }

 private:
  const json* find(const char* key, bool required) {
    if (error_ || !j_.is_object()) {
      return nullptr;
    }
    auto it = j_.find(key);
    if (it == j_.end()) {
      if (required) {
        fail_at(key, "is required");
      }
      return nullptr;
    }
    return &*it;
  }
  std::optional<int64_t> checked_integer(const json& v, const std::string& key, int64_t min, int64_t max,
                                         const char* what = "expected an integer") {
    if (!v.is_number_integer()) {
      fail_at(key, what);
      return std::nullopt;
    }
    // Unsigned beyond int64 (1e19) and signed values alike, without a cast
    // that could wrap.
    const bool is_unsigned = v.is_number_unsigned();  // every non-negative integer parsed
    const bool too_big = is_unsigned ? v.get<uint64_t>() > static_cast<uint64_t>(max) : v.get<int64_t>() > max;
    const bool too_small =
        is_unsigned ? min > 0 && v.get<uint64_t>() < static_cast<uint64_t>(min) : v.get<int64_t>() < min;
    if (too_big || too_small) {
      fail_at(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
      return std::nullopt;
    }
    return is_unsigned ? static_cast<int64_t>(v.get<uint64_t>()) : v.get<int64_t>();
  }

  const json& j_;
  std::string prefix_;
  std::optional<Error> error_;
};

}  // namespace tranche::protocol
