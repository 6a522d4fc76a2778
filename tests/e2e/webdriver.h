#pragma once
// A small W3C WebDriver client for the console's browser tests: Debian's
// chromedriver on a loopback port driving Debian's headless Chromium
// (never a downloaded browser). Enough of the protocol to navigate, find,
// click, type, run a script and take a screenshot; every call has the HTTP
// client's deadline, every wait one of its own.

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "harness.h"

namespace tranche::e2e {

inline constexpr const char* kChromiumBinary = "/usr/bin/chromium";
inline constexpr const char* kChromedriverBinary = "/usr/bin/chromedriver";

// chromedriver and one browser session, both ended by the destructor.
class Browser {
 public:
  // Starts chromedriver and a headless Chromium of `width` x `height`;
  // throws with the reason (a missing package names `scripts/bootstrap`).
  Browser(const fs::path& log_dir, int width = 1280, int height = 900);
  ~Browser();
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  void navigate(const std::string& url);
  // The element matching a CSS selector, as WebDriver's reference; nullopt
  // when none does.
  std::optional<std::string> find(const std::string& css);
  // Waits until an element matches; nullopt when none did within `timeout`.
  std::optional<std::string> wait_for(const std::string& css, std::chrono::milliseconds timeout);
  void click(const std::string& element);
  // Keys as WebDriver takes them: text, or "\uE007" for Enter.
  void type(const std::string& element, const std::string& keys);
  // Runs `script` (a function body; `arguments[0]` is `arg`) in the page.
  nlohmann::json script(const std::string& script, const nlohmann::json& arg = nullptr);
  // The text of the first element matching `css`, "" when there is none.
  std::string text_of(const std::string& css);
  // The window's size: a laptop's, a phone's.
  void resize(int width, int height);
  // A PNG of the window.
  void screenshot(const fs::path& file);

 private:
  nlohmann::json call(const std::string& method, const std::string& path, const nlohmann::json& body = nullptr);

  std::unique_ptr<Process> driver_;
  std::string driver_url_;
  std::string session_;
};

}  // namespace tranche::e2e
