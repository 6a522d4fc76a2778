#include "cli/output.h"

#include <algorithm>
#include <sstream>

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

namespace tranche::cli {

void print_table(std::ostream& out, const Row& headers, const std::vector<Row>& rows) {
  std::vector<size_t> widths(headers.size());
  for (size_t i = 0; i < headers.size(); ++i) {
    widths[i] = headers[i].size();
    for (const auto& row : rows) {
      widths[i] = std::max(widths[i], i < row.size() ? row[i].size() : 0);
    }
  }
  auto print_row = [&](const Row& row) {
    std::string line;
    for (size_t i = 0; i < headers.size(); ++i) {
      const std::string& value = i < row.size() ? row[i] : std::string();
      line += value;
      if (i + 1 < headers.size()) {
        line += std::string(widths[i] - value.size() + 2, ' ');
      }
    }
    out << line << '\n';
  };
  print_row(headers);
  for (const auto& row : rows) {
    print_row(row);
  }
}

namespace {
void emit(YAML::Emitter& out, const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [k, v] : j.items()) {
        out << YAML::Key << k << YAML::Value;
        emit(out, v);
      }
      out << YAML::EndMap;
      break;
    case nlohmann::json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& v : j) {
        emit(out, v);
      }
      out << YAML::EndSeq;
      break;
    case nlohmann::json::value_t::string:
      out << YAML::DoubleQuoted << j.get<std::string>();
      break;
    case nlohmann::json::value_t::null:
      out << YAML::Null;
      break;
    default:
      out << j.dump();
  }
}
}  // namespace

void print_document(std::ostream& out, const nlohmann::json& doc, OutputFormat format) {
  if (format == OutputFormat::kYaml) {
    YAML::Emitter emitter;
    emit(emitter, doc);
    out << emitter.c_str() << '\n';
  } else {
    out << doc.dump(2) << '\n';
  }
}

std::string cell(const nlohmann::json& value) {
  if (value.is_null()) {
    return "-";
  }
  if (value.is_string()) {
    return value.get<std::string>();
  }
  if (value.is_boolean()) {
    return value.get<bool>() ? "yes" : "no";
  }
  return value.dump();
}

std::string event_line(const nlohmann::json& e) {
  std::ostringstream line;
  line << e.value("seq", 0) << "  " << e.value("time", "") << "  " << e.value("type", "") << "  "
       << e.value("member", e.value("path", ""));
  if (e.contains("member") && e["to"].is_string()) {
    line << " -> " << e["to"].get<std::string>();
  }
  line << "  " << e.value("message", "");
  return line.str();
}

}  // namespace tranche::cli
