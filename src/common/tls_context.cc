#include "common/tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <filesystem>

#include "common/server_url.h"

namespace tranche {

std::string openssl_cause() {
  std::string cause;
  for (unsigned long code = ERR_get_error(); code != 0; code = ERR_get_error()) {
    if (cause.empty()) {
      char text[256];
      ERR_error_string_n(code, text, sizeof text);
      cause = text;
    }
  }
  return cause;
}

namespace {

Status require_readable(const std::string& file, const std::string& what, const std::string& field) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {
    return fail(ErrorCode::kInvalid, what + " " + file + " does not exist or is not a file", field);
  }
  return {};
}

}  // namespace

Status configure_tls_client(SSL_CTX* context, const std::string& ca_file) {
  if (SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) != 1) {
    return fail(ErrorCode::kInternal, "cannot require TLS 1.2: " + openssl_cause());
  }
  SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
  if (ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(context) != 1) {
      return fail(ErrorCode::kInternal, "cannot load the system's CA certificates: " + openssl_cause());
    }
    return {};
  }
  if (auto ok = require_readable(ca_file, "CA file", "ca"); !ok) {
    return ok;
  }
  if (SSL_CTX_load_verify_locations(context, ca_file.c_str(), nullptr) != 1) {
    return fail(ErrorCode::kInvalid, "cannot load the CA file " + ca_file + ": " + openssl_cause(), "ca");
  }
  return {};
}

Status expect_server_name(SSL* connection, const std::string& host) {
  X509_VERIFY_PARAM* param = SSL_get0_param(connection);
  if (is_ip_address(host)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
      return fail(ErrorCode::kInvalid, "cannot check the server's certificate for " + host + ": " + openssl_cause());
    }
    return {};
  }
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (SSL_set1_host(connection, host.c_str()) != 1 || SSL_set_tlsext_host_name(connection, host.c_str()) != 1) {
    return fail(ErrorCode::kInvalid, "cannot check the server's certificate for " + host + ": " + openssl_cause());
  }
  return {};
}

Status configure_tls_server(SSL_CTX* context, const std::string& certificate_file, const std::string& key_file) {
  if (auto ok = require_readable(certificate_file, "TLS certificate", "tls-cert"); !ok) {
    return ok;
  }
  if (auto ok = require_readable(key_file, "TLS key", "tls-key"); !ok) {
    return ok;
  }
  if (SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) != 1) {
    return fail(ErrorCode::kInternal, "cannot require TLS 1.2: " + openssl_cause());
  }
  if (SSL_CTX_use_certificate_chain_file(context, certificate_file.c_str()) != 1) {
    return fail(ErrorCode::kInvalid, "cannot load the TLS certificate " + certificate_file + ": " + openssl_cause(),
                "tls-cert");
  }
  if (SSL_CTX_use_PrivateKey_file(context, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return fail(ErrorCode::kInvalid, "cannot load the TLS key " + key_file + ": " + openssl_cause(), "tls-key");
  }
  if (SSL_CTX_check_private_key(context) != 1) {
    return fail(
        ErrorCode::kInvalid,
        "the TLS key " + key_file + " is not the key of the certificate " + certificate_file + ": " + openssl_cause(),
        "tls-key");
  }
  return {};
}

std::string describe_handshake_failure(const SSL* connection, const std::string& transport_error) {
  const long verdict = SSL_get_verify_result(connection);
  if (verdict != X509_V_OK) {
    return std::string("certificate verify failed: ") + X509_verify_cert_error_string(verdict);
  }
  return transport_error;
}

}  // namespace tranche
