#pragma once
// The console's files as the build embedded them (embed_console.cmake
// writes console_files.cc, which nothing includes: its arrays are big).

#include <span>
#include <string_view>

namespace tranche::api {

struct ConsoleFile {
  std::string_view name;  // "index.html", "console.js"
  std::string_view body;
};

std::span<const ConsoleFile> console_files();

}  // namespace tranche::api
