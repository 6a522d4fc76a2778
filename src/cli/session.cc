#include "cli/session.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "common/names.h"
#include "common/time_format.h"

namespace tranche::cli {

namespace {

using nlohmann::json;

constexpr const char* kDefaultServer = "http://127.0.0.1:7468";
constexpr const char* kDefaultTokenFile = "./tranche-data/admin.token";

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

std::string data_dir_server(const std::filesystem::path& data_dir) {
  std::ifstream file(data_dir / "controller.url");
  std::string url;
  return std::getline(file, url) && !url.empty() ? url : kDefaultServer;
}

std::string data_dir_ca(const std::filesystem::path& data_dir) {
  std::error_code ec;
  const std::filesystem::path ca = data_dir / "ca.crt";
  return std::filesystem::exists(ca, ec) ? ca.string() : std::string();
}

OutputFormat parse_format(const std::string& name) {
  if (name == "json") {
    return OutputFormat::kJson;
  }
  if (name == "yaml") {
    return OutputFormat::kYaml;
  }
  return OutputFormat::kTable;
}

}  // namespace

Session::Session(const ClientOptions& options) : format_(parse_format(options.output)) {
  // The data dir of a local controller, where the admin token is: it also
  // says where that controller serves (controller.url) and, with --dev
  // --tls, which CA to trust (ca.crt).
  const std::string token_file = env_or("TRANCHE_TOKEN_FILE", kDefaultTokenFile);
  const std::filesystem::path data_dir = std::filesystem::path(token_file).parent_path();
  std::string server = options.server.empty() ? env_or("TRANCHE_SERVER", data_dir_server(data_dir)) : options.server;
  std::string token = options.token.empty() ? env_or("TRANCHE_TOKEN", "") : options.token;
  if (token.empty()) {
    std::ifstream file(token_file);
    std::getline(file, token);
  }
  TransportOptions transport;
  transport.ca_file = options.ca.empty() ? env_or("TRANCHE_CA", data_dir_ca(data_dir)) : options.ca;
  if (!options.timeout.empty()) {
    transport.timeout = parse_duration(options.timeout).value_or(kDefaultRequestTimeout);  // checked by the parser
  }
  client_ = std::make_unique<ApiClient>(std::move(server), std::move(token), std::move(transport));
}

Result<json> Session::call(const std::string& method, const std::string& target, const std::string& body,
                           const std::string& content_type) const {
  return answer(client_->send(method, target, body, content_type), target);
}

Result<json> Session::upload(const std::string& target, const std::string& file) const {
  return answer(client_->send_file("POST", target, file), target);
}

Result<json> Session::answer(Result<Reply> reply, const std::string& target) const {
  if (!reply) {
    return std::unexpected(reply.error());
  }
  json doc = json::parse(reply->body, nullptr, false);
  if (reply->status >= 200 && reply->status < 300) {
    if (doc.is_discarded()) {
      return fail(ErrorCode::kInternal, "server sent a non-JSON answer to " + target);
    }
    return doc;
  }
  Error e{error_code_from_http_status(reply->status), "server answered " + std::to_string(reply->status), ""};
  if (!doc.is_discarded() && doc.contains("error")) {
    const json& err = doc["error"];
    e.message = err.value("message", e.message);
    e.field = err.value("field", "");
  }
  return std::unexpected(e);
}

bool Session::print_structured(const json& doc) const {
  if (format_ == OutputFormat::kTable) {
    return false;
  }
  print_document(std::cout, doc, format_);
  return true;
}

int report(const Error& e) {
  std::cerr << "error: " << e.describe() << '\n';
  return 1;
}

std::pair<std::string, std::string> split_app(const std::string& path) {
  const auto parts = split_path(path);
  std::string rest;
  for (size_t i = 1; i < parts.size(); ++i) {
    rest += (rest.empty() ? "" : "/") + parts[i];
  }
  return {parts.empty() ? std::string() : parts[0], rest};
}

std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out.push_back(static_cast<char>(c));
    } else {
      out += {'%', kHex[c >> 4], kHex[c & 15]};
    }
  }
  return out;
}

int print_apply_answer(const Session& s, const json& answer, const std::string& app) {
  if (s.print_structured(answer)) {
    return 0;
  }
  std::cout << answer.value("message", "") << '\n';
  if (answer.contains("rollout") && answer["rollout"].is_number_integer()) {
    std::cout << "follow rollout " << answer["rollout"].get<int64_t>() << " with: tranche rollout status " << app
              << " --watch\n";
  }
  return 0;
}

}  // namespace tranche::cli
