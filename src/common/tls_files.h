#pragma once
// Certificates for TLS without an outside PKI. `tranche controller --dev
// --tls` makes a private CA and a server certificate signed by it, and keeps
// them in the data dir, so that the CLI and agents pin the same CA across
// restarts. Keys are EC P-256, written PEM (PKCS#8) with mode 0600.

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "common/error.h"

namespace tranche {

// A certificate and its private key, PEM encoded.
struct PemCredentials {
  std::string certificate;
  std::string private_key;
};

// A self-signed CA certificate (10 years), for signing server certificates.
Result<PemCredentials> create_certificate_authority(const std::string& common_name);

// A server certificate signed by `ca` whose subjectAltName lists `hosts`:
// each an IP address (IPv4 or IPv6) or a DNS name. Unspecified addresses
// (0.0.0.0, ::) are left out: nobody dials them.
Result<PemCredentials> issue_server_certificate(const PemCredentials& ca, const std::vector<std::string>& hosts,
                                                std::chrono::hours validity);

// Whether `certificate` (PEM) was signed by `ca_certificate` (PEM), names
// every host of `hosts` (as issue_server_certificate puts them), and is
// still valid `margin` from now.
Result<bool> certificate_serves(const std::string& certificate, const std::string& ca_certificate,
                                const std::vector<std::string>& hosts, std::chrono::hours margin);

struct DevTlsFiles {
  std::filesystem::path ca_certificate;      // what clients and agents pin
  std::filesystem::path server_certificate;  // what the controller serves
  std::filesystem::path server_key;
  bool created_ca = false;                 // this call made the CA
  bool issued_server_certificate = false;  // this call issued the server certificate
};

// The --dev --tls files in `dir`: ca.crt, ca.key, server.crt, server.key.
// The CA is made once and reused (clients keep trusting it); the server
// certificate is issued again when it does not serve `hosts`, is about to
// expire, or was not signed by the CA there.
Result<DevTlsFiles> ensure_dev_tls_files(const std::filesystem::path& dir, const std::vector<std::string>& hosts);

}  // namespace tranche
