#include "webdriver.h"

#include <csignal>
#include <fstream>
#include <stdexcept>

#include "cli/client.h"

namespace tranche::e2e {

namespace {

using nlohmann::json;

// WebDriver's key for an element reference in JSON.
constexpr const char* kElementKey = "element-6066-11e4-a52e-4f735466cecf";

std::string base64_decode(const std::string& text) {
  static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    const size_t value = kAlphabet.find(c);
    if (value == std::string::npos) {
      continue;  // '=' padding, line breaks
    }
    buffer = (buffer << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return out;
}

}  // namespace

Browser::Browser(const fs::path& log_dir, int width, int height) {
  for (const char* binary : {kChromiumBinary, kChromedriverBinary}) {
    if (!fs::exists(binary)) {
      throw std::runtime_error(std::string(binary) +
                               " is missing: the browser tests need Debian's chromium and chromium-driver "
                               "(./scripts/bootstrap installs them)");
    }
  }
  const unsigned short port = free_port();
  driver_url_ = "http://127.0.0.1:" + std::to_string(port);
  driver_ = std::make_unique<Process>(
      std::vector<std::string>{kChromedriverBinary, "--port=" + std::to_string(port)}, log_dir, "chromedriver");
  const bool ready = wait_until(
      [&] {
        cli::ApiClient client(driver_url_, "", cli::TransportOptions{{}, std::chrono::milliseconds(1000)});
        auto reply = client.send("GET", "/status");
        return reply && reply->status == 200 && json::parse(reply->body, nullptr, false)["value"].value("ready", false);
      },
      20s);
  if (!ready) {
    throw std::runtime_error("chromedriver did not become ready: " + driver_->err());
  }
  const json args = {"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-extensions", "--disable-background-networking",
                     "--window-size=" + std::to_string(width) + "," + std::to_string(height)};
  const json created = call("POST", "/session",
                            {{"capabilities",
                              {{"alwaysMatch",
                                {{"browserName", "chrome"},
                                 {"goog:chromeOptions", {{"binary", kChromiumBinary}, {"args", args}}}}}}}});
  session_ = created.value("sessionId", "");
  if (session_.empty()) {
    throw std::runtime_error("no browser session: " + created.dump());
  }
}

Browser::~Browser() {
  if (!session_.empty()) {
    try {
      call("DELETE", "/session/" + session_);
    } catch (const std::exception&) {
      // The driver ends with its process below anyway.
    }
  }
  if (driver_) {
    driver_->signal(SIGTERM);
    driver_->wait(10s);
  }
}

json Browser::call(const std::string& method, const std::string& path, const json& body) {
  cli::ApiClient client(driver_url_, "", cli::TransportOptions{{}, std::chrono::milliseconds(60'000)});
  auto reply = client.send(method, path, body.is_null() ? std::string() : body.dump());
  if (!reply) {
    throw std::runtime_error("WebDriver " + method + " " + path + ": " + reply.error().describe());
  }
  json answer = json::parse(reply->body, nullptr, false);
  if (reply->status != 200 || answer.is_discarded()) {
    throw std::runtime_error("WebDriver " + method + " " + path + " answered " + std::to_string(reply->status) +
                             ": " + reply->body.substr(0, 2000));
  }
  return answer["value"];
}

void Browser::navigate(const std::string& url) { call("POST", "/session/" + session_ + "/url", {{"url", url}}); }

std::optional<std::string> Browser::find(const std::string& css) {
  const json found = call("POST", "/session/" + session_ + "/elements", {{"using", "css selector"}, {"value", css}});
  if (!found.is_array() || found.empty()) {
    return std::nullopt;
  }
  return found[0][kElementKey].get<std::string>();
}

std::optional<std::string> Browser::wait_for(const std::string& css, std::chrono::milliseconds timeout) {
  std::optional<std::string> element;
  wait_until([&] { return (element = find(css)).has_value(); }, timeout);
  return element;
}

void Browser::click(const std::string& element) {
  call("POST", "/session/" + session_ + "/element/" + element + "/click", json::object());
}

void Browser::type(const std::string& element, const std::string& keys) {
  call("POST", "/session/" + session_ + "/element/" + element + "/value", {{"text", keys}});
}

json Browser::script(const std::string& script, const json& arg) {
  return call("POST", "/session/" + session_ + "/execute/sync", {{"script", script}, {"args", json::array({arg})}});
}

std::string Browser::text_of(const std::string& css) {
  const json text = script("const e = document.querySelector(arguments[0]); return e ? e.textContent : '';", css);
  return text.is_string() ? text.get<std::string>() : "";
}

void Browser::resize(int width, int height) {
  call("POST", "/session/" + session_ + "/window/rect", {{"width", width}, {"height", height}});
}

void Browser::screenshot(const fs::path& file) {
  const json png = call("GET", "/session/" + session_ + "/screenshot");
  std::ofstream out(file, std::ios::binary);
  out << base64_decode(png.get<std::string>());
}

}  // namespace tranche::e2e
