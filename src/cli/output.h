#pragma once
// Printing API answers: aligned tables for people, JSON or YAML for tools.

#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tranche::cli {

enum class OutputFormat { kTable, kJson, kYaml };

using Row = std::vector<std::string>;
void print_table(std::ostream& out, const Row& headers, const std::vector<Row>& rows);

// JSON (indented) or YAML of a document.
void print_document(std::ostream& out, const nlohmann::json& doc, OutputFormat format);

// A JSON scalar as a cell: strings bare, null as "-".
std::string cell(const nlohmann::json& value);

// An event as one line: "12  TIME  MemberStateChanged  shop/web/3 -> Starting  starting on host-1".
std::string event_line(const nlohmann::json& event);

}  // namespace tranche::cli
