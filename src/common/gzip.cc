#include "common/gzip.h"

#define ZLIB_CONST  // next_in is a pointer to const
#include <zlib.h>

#include <optional>
#include <stdexcept>

namespace tranche {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) {
      return false;
    }
  }
  return true;
}

// A coding's weight is zero only when written so ("q=0", "q=0.0", "q=0.000").
bool weight_is_zero(std::string_view params) {
  while (!params.empty()) {
    const size_t semi = params.find(';');
    const std::string_view param = trim(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view{} : params.substr(semi + 1);
    if (param.size() >= 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
      const std::string_view value = param.substr(2);
      return !value.empty() && value.find_first_not_of("0.") == std::string_view::npos;
    }
  }
  return false;
}

}  // namespace

bool accepts_gzip(std::string_view accept_encoding) {
  std::optional<bool> gzip_named, any;
  while (!accept_encoding.empty()) {
    const size_t comma = accept_encoding.find(',');
    const std::string_view item = accept_encoding.substr(0, comma);
    accept_encoding = comma == std::string_view::npos ? std::string_view{} : accept_encoding.substr(comma + 1);
    const size_t semi = item.find(';');
    const std::string_view coding = trim(item.substr(0, semi));
    const bool admitted = semi == std::string_view::npos || !weight_is_zero(item.substr(semi + 1));
    if (iequals(coding, "gzip") || iequals(coding, "x-gzip")) {
      gzip_named = admitted;
    } else if (coding == "*") {
      any = admitted;
    }
  }
  return gzip_named.value_or(any.value_or(false));
}

std::string gzip(std::string_view data) {
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::bad_alloc();  // zlib fails to initialise only for want of memory
  }
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())), '\0');
  z.next_in = reinterpret_cast<const Bytef*>(data.data());
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int status = deflate(&z, Z_FINISH);  // deflateBound leaves room for it all in one call
  out.resize(z.total_out);
  deflateEnd(&z);
  if (status != Z_STREAM_END) {
    throw std::logic_error("gzip: deflate did not finish within deflateBound");
  }
  return out;
}

Result<std::string> gunzip(std::string_view data, size_t max_size) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) {  // 15 + 16: a gzip member only
    throw std::bad_alloc();
  }
  z.next_in = reinterpret_cast<const Bytef*>(data.data());
  z.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char chunk[16 * 1024];
  int status = Z_OK;
  while (status == Z_OK && out.size() <= max_size) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof chunk;
    status = inflate(&z, Z_NO_FLUSH);
    out.append(chunk, sizeof chunk - z.avail_out);
  }
  const std::string reason = z.msg != nullptr ? z.msg : "";
  inflateEnd(&z);
  if (out.size() > max_size) {
    return fail(ErrorCode::kInvalid, "gzip data inflates to more than " + std::to_string(max_size) + " bytes");
  }
  if (status != Z_STREAM_END || z.avail_in != 0) {
    return fail(ErrorCode::kInvalid, status == Z_STREAM_END ? "data after the gzip member"
                                     : reason.empty()       ? "truncated gzip data"
                                                            : "invalid gzip data: " + reason);
  }
  return out;
}

}  // namespace tranche
