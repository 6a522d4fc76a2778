// Manifest text to a json value: YAML resolved by the core schema and
// converted, JSON parsed refusing duplicate keys, both within the limits on
// hostile documents; parse_manifest then hands the value to the readers.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include "model/manifest.h"
#include "model/manifest_readers.h"

namespace tranche {

namespace {

using manifest_detail::json;
using manifest_detail::kMaxYamlDepth;
using manifest_detail::max_yaml_nodes;
using manifest_detail::read_application;
using manifest_detail::reject_syntax;
using manifest_detail::Rejection;
using manifest_detail::too_deep;
using manifest_detail::type_name;

// ---------------------------------------------------------------------------
// Documents: YAML is brought to the same json value that JSON parses to, so
// one validator serves both.

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t extra = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) {
      return false;  // truncated sequence
    }
    for (size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    constexpr std::uint32_t kMinimum[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMinimum[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

bool all_digits(std::string_view s, int base) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [base](char c) {
    if (c >= '0' && c <= '9') {
      return c - '0' < base;
    }
    const char lower = static_cast<char>(c | 0x20);
    return base == 16 && lower >= 'a' && lower <= 'f';
  });
}

std::optional<double> parse_double(std::string_view s) {
  if (!s.empty() && s.front() == '+') {
    s.remove_prefix(1);
  }
  double x = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
  if (ptr != s.data() + s.size() || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
    return std::nullopt;
  }
  if (ec == std::errc::result_out_of_range) {
    // from_chars leaves x alone when the value is too large or too small.
    const size_t exponent = s.find_first_of("eE");
    const bool tiny = exponent != std::string_view::npos && s.substr(exponent + 1).starts_with('-');
    x = tiny ? 0.0 : (s.starts_with('-') ? -HUGE_VAL : HUGE_VAL);
  }
  return x;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, the core schema's float.
bool is_core_float(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    const size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      ++i;
    }
    return i - start;
  };
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
    ++i;
  }
  const size_t whole = digits();
  size_t fraction = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    fraction = digits();
  }
  if (whole == 0 && fraction == 0) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
      ++i;
    }
    if (digits() == 0) {
      return false;
    }
  }
  return i == s.size();
}

// YAML 1.2 core schema resolution of a plain (unquoted) scalar.
json resolve_plain_scalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    return nullptr;
  }
  if (s == "true" || s == "True" || s == "TRUE") {
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    return false;
  }
  const std::string_view v(s);
  const bool hex = v.starts_with("0x") && all_digits(v.substr(2), 16);
  const bool octal = v.starts_with("0o") && all_digits(v.substr(2), 8);
  if (hex || octal) {
    std::uint64_t u = 0;
    const auto [ptr, ec] = std::from_chars(v.data() + 2, v.data() + v.size(), u, hex ? 16 : 8);
    if (ec == std::errc()) {
      return u;
    }
    return s;  // too large for any integer: keep the text
  }
  const std::string_view unsigned_part = (v.starts_with('-') || v.starts_with('+')) ? v.substr(1) : v;
  if (all_digits(unsigned_part, 10)) {
    const std::string_view text = v.starts_with('+') ? v.substr(1) : v;
    std::int64_t i = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
    if (ec == std::errc()) {
      return i;
    }
    return parse_double(v).value_or(0.0);
  }
  if (is_core_float(v)) {
    if (const auto x = parse_double(v)) {
      return *x;
    }
  }
  const std::string_view magnitude = unsigned_part;
  if (magnitude == ".inf" || magnitude == ".Inf" || magnitude == ".INF") {
    return v.starts_with('-') ? -HUGE_VAL : HUGE_VAL;
  }
  if (v == ".nan" || v == ".NaN" || v == ".NAN") {
    return std::nan("");
  }
  return s;
}

std::string describe_mark(const YAML::Mark& mark) {
  if (mark.is_null()) {
    return "";
  }
  return " at line " + std::to_string(mark.line + 1) + ", column " + std::to_string(mark.column + 1);
}

class YamlToJson {
 public:
  explicit YamlToJson(size_t max_nodes) : max_nodes_(max_nodes) {}

  json convert(const YAML::Node& node, int depth) {
    if (++nodes_ > max_nodes_) {
      reject_syntax("invalid YAML: the document expands to more than " + std::to_string(max_nodes_) +
                    " nodes (aliases?)");
    }
    if (depth > kMaxYamlDepth) {
      reject_syntax("invalid YAML" + describe_mark(node.Mark()) + ": " + too_deep());
    }
    switch (node.Type()) {
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined:
        return nullptr;
      case YAML::NodeType::Scalar:
        return scalar(node);
      case YAML::NodeType::Sequence: {
        json out = json::array();
        for (const auto& item : node) {
          out.push_back(convert(item, depth + 1));
        }
        return out;
      }
      case YAML::NodeType::Map: {
        json out = json::object();
        for (const auto& entry : node) {
          const YAML::Node& key = entry.first;
          if (!key.IsScalar()) {
            reject_syntax("invalid YAML" + describe_mark(key.Mark()) + ": mapping keys must be plain strings");
          }
          const std::string& name = key.Scalar();
          check_text(name, key);
          if (out.contains(name)) {
            reject_syntax("invalid YAML" + describe_mark(key.Mark()) + ": duplicate key '" + name + "'");
          }
          out[name] = convert(entry.second, depth + 1);
        }
        return out;
      }
    }
    return nullptr;
  }

 private:
  json scalar(const YAML::Node& node) {
    const std::string& text = node.Scalar();
    check_text(text, node);
    const std::string& tag = node.Tag();
    // yaml-cpp tags a quoted scalar "!" and a plain one "?".
    if (tag == "!" || tag == "tag:yaml.org,2002:str") {
      return text;
    }
    if (tag == "?" || tag.empty() || tag.starts_with("tag:yaml.org,2002:")) {
      return resolve_plain_scalar(text);
    }
    reject_syntax("invalid YAML" + describe_mark(node.Mark()) + ": unsupported tag '" + tag + "'");
  }

  static void check_text(const std::string& text, const YAML::Node& node) {
    if (!is_valid_utf8(text)) {
      reject_syntax("invalid YAML" + describe_mark(node.Mark()) + ": text is not valid UTF-8");
    }
  }

  size_t max_nodes_;
  size_t nodes_ = 0;
};

// Walks the document stream without building anything, to count the
// non-empty documents. It also guards LoadAll: yaml-cpp 0.7 reports a stray
// ',' at the top level as an endless run of empty documents that consume no
// input, so a document starting where the previous one did is an error.
class DocumentProbe : public YAML::EventHandler {
 public:
  Status run(std::string_view text) {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    std::optional<YAML::Mark> previous_start;
    while (parser.HandleNextDocument(*this)) {
      if (previous_start && previous_start->pos == start_.pos) {
        return fail(ErrorCode::kInvalid, "invalid YAML" + describe_mark(start_) + ": unexpected character");
      }
      previous_start = start_;
      documents_ += has_content_ ? 1 : 0;
      has_content_ = false;
    }
    return {};
  }
  int documents() const { return documents_; }

  void OnDocumentStart(const YAML::Mark& mark) override { start_ = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { has_content_ = true; }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {
    has_content_ = true;
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    has_content_ = true;
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    has_content_ = true;
  }
  void OnMapEnd() override {}

 private:
  YAML::Mark start_;
  bool has_content_ = false;
  int documents_ = 0;
};

Result<json> yaml_document(std::string_view text) {
  std::vector<YAML::Node> documents;
  try {
    DocumentProbe probe;
    if (Status s = probe.run(text); !s) {
      return std::unexpected(s.error());
    }
    if (probe.documents() > 1) {
      return fail(ErrorCode::kInvalid,
                  "invalid YAML: expected one document, found " + std::to_string(probe.documents()));
    }
    for (auto& document : YAML::LoadAll(std::string(text))) {
      if (!document.IsNull()) {
        documents.push_back(std::move(document));
      }
    }
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's own limit (far beyond ours), whose message is "bad file".
    return fail(ErrorCode::kInvalid, "invalid YAML" + describe_mark(e.mark) + ": " + too_deep());
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::kInvalid, "invalid YAML" + describe_mark(e.mark) + ": " + e.msg);
  }
  if (documents.empty()) {
    return json(nullptr);
  }
  try {
    return YamlToJson(max_yaml_nodes(text.size())).convert(documents.front(), 0);
  } catch (const Rejection& r) {
    return std::unexpected(r.error);
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::kInvalid, "invalid YAML" + describe_mark(e.mark) + ": " + e.msg);
  }
}

Result<json> json_document(std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return json(nullptr);
  }
  return parse_json_text(text);
}

}  // namespace

Result<json> parse_json_text(std::string_view text) {
  std::vector<std::set<std::string>> open_objects;
  std::optional<std::string> duplicate;
  auto watch_keys = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) {
          open_objects.pop_back();
        }
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second && !duplicate) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  try {
    json doc = json::parse(text, watch_keys);
    if (duplicate) {
      return fail(ErrorCode::kInvalid, "invalid JSON: duplicate key '" + *duplicate + "'");
    }
    return doc;
  } catch (const json::exception& e) {
    // what() reads "[json.exception.parse_error.101] parse error at line 1, column 5: ...".
    std::string_view what = e.what();
    if (const auto bracket = what.find("] "); what.starts_with('[') && bracket != std::string_view::npos) {
      what.remove_prefix(bracket + 2);
    }
    return fail(ErrorCode::kInvalid, "invalid JSON: " + std::string(what));
  }
}

Result<ApplicationSpec> parse_manifest(std::string_view text, ManifestFormat format) {
  Result<json> doc = format == ManifestFormat::kYaml ? yaml_document(text) : json_document(text);
  if (!doc) {
    return std::unexpected(doc.error());
  }
  if (doc->is_null()) {
    return fail(ErrorCode::kUnprocessable, "the manifest is empty");
  }
  if (!doc->is_object()) {
    return fail(ErrorCode::kUnprocessable, "the manifest must be a mapping, got " + type_name(*doc));
  }
  try {
    return read_application(*doc);
  } catch (const Rejection& r) {
    return std::unexpected(r.error);
  }
}

}  // namespace tranche
