#include "common/tls_files.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "common/atomic_file.h"
#include "common/server_url.h"
#include "common/tls_context.h"

namespace tranche {

namespace fs = std::filesystem;

namespace {

constexpr auto kCaValidity = std::chrono::hours(24 * 365 * 10);
constexpr auto kServerValidity = std::chrono::hours(24 * 365);
// A server certificate this close to its end is issued again on start.
constexpr auto kServerRenewMargin = std::chrono::hours(24 * 7);
// Hosts' clocks differ a little: a certificate is valid from a bit before
// it was made.
constexpr long kBackdateSeconds = 300;

template <auto Free>
struct Freer {
  template <class T>
  void operator()(T* p) const {
    Free(p);
  }
};
using Key = std::unique_ptr<EVP_PKEY, Freer<EVP_PKEY_free>>;
using Certificate = std::unique_ptr<X509, Freer<X509_free>>;
using Bio = std::unique_ptr<BIO, Freer<BIO_free>>;
using Bignum = std::unique_ptr<BIGNUM, Freer<BN_free>>;
using Extension = std::unique_ptr<X509_EXTENSION, Freer<X509_EXTENSION_free>>;

std::unexpected<Error> openssl_failure(const std::string& what) {
  const std::string cause = openssl_cause();
  return fail(ErrorCode::kInternal, what + (cause.empty() ? "" : ": " + cause));
}

bool is_unspecified_address(const std::string& host) { return host == "0.0.0.0" || host == "::"; }

// Names go into an OpenSSL config string ("DNS:a,IP:b"): nothing that could
// end one entry and start another.
bool is_dns_name(const std::string& host) {
  return !host.empty() &&
         std::all_of(host.begin(), host.end(), [](unsigned char c) { return std::isalnum(c) || c == '.' || c == '-'; });
}

Result<Key> generate_key() {
  Key key(EVP_EC_gen("P-256"));
  if (!key) {
    return openssl_failure("cannot generate an EC P-256 key");
  }
  return key;
}

Result<std::string> to_pem(X509* certificate) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), certificate) != 1) {
    return openssl_failure("cannot encode a certificate");
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

Result<std::string> to_pem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return openssl_failure("cannot encode a private key");
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

Result<Certificate> certificate_from_pem(const std::string& pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Certificate certificate(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!certificate) {
    return openssl_failure("not a PEM certificate");
  }
  return certificate;
}

// An encrypted key is refused rather than prompted for on the terminal.
int no_passphrase(char*, int, int, void*) { return -1; }

Result<Key> key_from_pem(const std::string& pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Key key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
  if (!key) {
    return openssl_failure("not an unencrypted PEM private key");
  }
  return key;
}

Status add_extension(X509* certificate, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer, certificate, nullptr, nullptr, 0);
  Extension extension(X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str()));
  if (!extension || X509_add_ext(certificate, extension.get(), -1) != 1) {
    return openssl_failure(std::string("cannot add the extension ") + OBJ_nid2sn(nid) + " = " + value);
  }
  return {};
}

// A version 3 certificate of `key`, valid from now for `validity`, with a
// random serial and the subject CN=`common_name`, O=Tranche; not yet signed.
Result<Certificate> new_certificate(EVP_PKEY* key, const std::string& common_name, std::chrono::hours validity) {
  Certificate certificate(X509_new());
  Bignum serial(BN_new());
  if (!certificate || !serial || X509_set_version(certificate.get(), X509_VERSION_3) != 1 ||
      BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(certificate.get())) == nullptr ||
      X509_gmtime_adj(X509_getm_notBefore(certificate.get()), -kBackdateSeconds) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(certificate.get()),
                      std::chrono::duration_cast<std::chrono::seconds>(validity).count()) == nullptr ||
      X509_set_pubkey(certificate.get(), key) != 1) {
    return openssl_failure("cannot make a certificate");
  }
  X509_NAME* subject = X509_get_subject_name(certificate.get());
  const auto* cn = reinterpret_cast<const unsigned char*>(common_name.c_str());
  const auto* organization = reinterpret_cast<const unsigned char*>("Tranche");
  if (X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8, organization, -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, cn, -1, -1, 0) != 1) {
    return openssl_failure("cannot name a certificate " + common_name);
  }
  return certificate;
}

// Whether `certificate` is still valid `margin` from now.
bool valid_for(X509* certificate, std::chrono::hours margin) {
  time_t then = std::time(nullptr) + std::chrono::duration_cast<std::chrono::seconds>(margin).count();
  return X509_cmp_time(X509_get0_notAfter(certificate), &then) > 0;
}

Result<std::string> read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(ErrorCode::kUnavailable, "cannot read " + path.string());
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Writes the key first: a crash between the two leaves a key that matches no
// certificate, which the next start notices, never a certificate without its key.
Status write_credentials(const PemCredentials& credentials, const fs::path& certificate, const fs::path& key) {
  if (auto ok = write_file_atomically(key, credentials.private_key, 0600); !ok) {
    return ok;
  }
  return write_file_atomically(certificate, credentials.certificate, 0644);
}

struct DevCa {
  PemCredentials credentials;
  bool created = false;
};

// The CA in `dir`, made when there is none. A certificate whose key is gone
// is not replaced silently: clients pin it, and a new CA would lock them out.
Result<DevCa> ensure_ca(const fs::path& dir) {
  const fs::path certificate_path = dir / "ca.crt";
  const fs::path key_path = dir / "ca.key";
  std::error_code ec;
  if (!fs::exists(certificate_path, ec)) {
    auto ca = create_certificate_authority("Tranche dev CA");
    if (!ca) {
      return std::unexpected(ca.error());
    }
    if (auto ok = write_credentials(*ca, certificate_path, key_path); !ok) {
      return std::unexpected(ok.error());
    }
    return DevCa{std::move(*ca), true};
  }
  auto certificate = read_text(certificate_path);
  auto key = read_text(key_path);
  if (!certificate || !key) {
    return std::unexpected(certificate ? key.error() : certificate.error());
  }
  auto parsed_certificate = certificate_from_pem(*certificate);
  auto parsed_key = key_from_pem(*key);
  const std::string remedy =
      "; restore it, or delete ca.crt and ca.key to make a new CA (clients must then "
      "trust the new ca.crt)";
  if (!parsed_certificate || !parsed_key) {
    return fail(ErrorCode::kUnavailable,
                (parsed_certificate ? key_path : certificate_path).string() + ": " +
                    (parsed_certificate ? parsed_key.error() : parsed_certificate.error()).message + remedy);
  }
  if (X509_check_private_key(parsed_certificate->get(), parsed_key->get()) != 1) {
    ERR_clear_error();
    return fail(ErrorCode::kUnavailable,
                key_path.string() + " is not the key of " + certificate_path.string() + remedy);
  }
  if (!valid_for(parsed_certificate->get(), kServerValidity)) {
    return fail(
        ErrorCode::kUnavailable,
        certificate_path.string() + " expires within a year, before a server certificate it signs would" + remedy);
  }
  return DevCa{PemCredentials{std::move(*certificate), std::move(*key)}, false};
}

// Whether the server credentials in `certificate_path`/`key_path` serve
// `hosts` under `ca` for a while yet; any doubt means no.
bool server_credentials_usable(const PemCredentials& ca, const fs::path& certificate_path, const fs::path& key_path,
                               const std::vector<std::string>& hosts) {
  auto certificate = read_text(certificate_path);
  auto key = read_text(key_path);
  if (!certificate || !key) {
    return false;
  }
  auto serves = certificate_serves(*certificate, ca.certificate, hosts, kServerRenewMargin);
  auto parsed_certificate = certificate_from_pem(*certificate);
  auto parsed_key = key_from_pem(*key);
  const bool usable = serves && *serves && parsed_certificate && parsed_key &&
                      X509_check_private_key(parsed_certificate->get(), parsed_key->get()) == 1;
  ERR_clear_error();
  return usable;
}

}  // namespace

Result<PemCredentials> create_certificate_authority(const std::string& common_name) {
  auto key = generate_key();
  if (!key) {
    return std::unexpected(key.error());
  }
  auto certificate = new_certificate(key->get(), common_name, kCaValidity);
  if (!certificate) {
    return std::unexpected(certificate.error());
  }
  X509* c = certificate->get();
  if (X509_set_issuer_name(c, X509_get_subject_name(c)) != 1) {
    return openssl_failure("cannot make a CA certificate");
  }
  for (const auto& [nid, value] :
       {std::pair{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
        std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"}, std::pair{NID_subject_key_identifier, "hash"}}) {
    if (auto ok = add_extension(c, c, nid, value); !ok) {
      return std::unexpected(ok.error());
    }
  }
  if (X509_sign(c, key->get(), EVP_sha256()) <= 0) {
    return openssl_failure("cannot sign the CA certificate");
  }
  auto certificate_pem = to_pem(c);
  auto key_pem = to_pem(key->get());
  if (!certificate_pem || !key_pem) {
    return std::unexpected(certificate_pem ? key_pem.error() : certificate_pem.error());
  }
  return PemCredentials{std::move(*certificate_pem), std::move(*key_pem)};
}

Result<PemCredentials> issue_server_certificate(const PemCredentials& ca, const std::vector<std::string>& hosts,
                                                std::chrono::hours validity) {
  std::string alt_names;
  for (const auto& host : hosts) {
    if (is_unspecified_address(host)) {
      continue;
    }
    if (!is_ip_address(host) && !is_dns_name(host)) {
      return fail(ErrorCode::kInvalid, "'" + host + "' is neither an IP address nor a DNS name", "hosts");
    }
    alt_names += (alt_names.empty() ? "" : ",") + std::string(is_ip_address(host) ? "IP:" : "DNS:") + host;
  }
  if (alt_names.empty()) {
    return fail(ErrorCode::kInvalid, "a server certificate needs at least one host name or address", "hosts");
  }
  auto ca_certificate = certificate_from_pem(ca.certificate);
  auto ca_key = key_from_pem(ca.private_key);
  if (!ca_certificate || !ca_key) {
    return std::unexpected(ca_certificate ? ca_key.error() : ca_certificate.error());
  }
  auto key = generate_key();
  if (!key) {
    return std::unexpected(key.error());
  }
  // The first name is the subject's, for people reading the certificate;
  // clients check the subjectAltName only.
  const std::string first = alt_names.substr(alt_names.find(':') + 1, alt_names.find(',') - alt_names.find(':') - 1);
  auto certificate = new_certificate(key->get(), first, validity);
  if (!certificate) {
    return std::unexpected(certificate.error());
  }
  X509* c = certificate->get();
  if (X509_set_issuer_name(c, X509_get_subject_name(ca_certificate->get())) != 1) {
    return openssl_failure("cannot make a server certificate");
  }
  for (const auto& [nid, value] : {std::pair{NID_basic_constraints, std::string("critical,CA:FALSE")},
                                   std::pair{NID_key_usage, std::string("critical,digitalSignature")},
                                   std::pair{NID_ext_key_usage, std::string("serverAuth")},
                                   std::pair{NID_subject_key_identifier, std::string("hash")},
                                   std::pair{NID_authority_key_identifier, std::string("keyid:always")},
                                   std::pair{NID_subject_alt_name, alt_names}}) {
    if (auto ok = add_extension(c, ca_certificate->get(), nid, value); !ok) {
      return std::unexpected(ok.error());
    }
  }
  if (X509_sign(c, ca_key->get(), EVP_sha256()) <= 0) {
    return openssl_failure("cannot sign the server certificate");
  }
  auto certificate_pem = to_pem(c);
  auto key_pem = to_pem(key->get());
  if (!certificate_pem || !key_pem) {
    return std::unexpected(certificate_pem ? key_pem.error() : certificate_pem.error());
  }
  return PemCredentials{std::move(*certificate_pem), std::move(*key_pem)};
}

Result<bool> certificate_serves(const std::string& certificate, const std::string& ca_certificate,
                                const std::vector<std::string>& hosts, std::chrono::hours margin) {
  auto parsed = certificate_from_pem(certificate);
  auto ca = certificate_from_pem(ca_certificate);
  if (!parsed || !ca) {
    return std::unexpected(parsed ? ca.error() : parsed.error());
  }
  bool serves = X509_verify(parsed->get(), X509_get0_pubkey(ca->get())) == 1 && valid_for(parsed->get(), margin);
  for (const auto& host : hosts) {
    if (!serves || is_unspecified_address(host)) {
      continue;
    }
    serves = is_ip_address(host) ? X509_check_ip_asc(parsed->get(), host.c_str(), 0) == 1
                                 : X509_check_host(parsed->get(), host.data(), host.size(), 0, nullptr) == 1;
  }
  ERR_clear_error();  // a failed signature check queues its reason; "no" is the answer
  return serves;
}

Result<DevTlsFiles> ensure_dev_tls_files(const fs::path& dir, const std::vector<std::string>& hosts) {
  DevTlsFiles files{dir / "ca.crt", dir / "server.crt", dir / "server.key"};
  auto ca = ensure_ca(dir);
  if (!ca) {
    return std::unexpected(ca.error());
  }
  files.created_ca = ca->created;
  if (!ca->created && server_credentials_usable(ca->credentials, files.server_certificate, files.server_key, hosts)) {
    return files;
  }
  auto server = issue_server_certificate(ca->credentials, hosts, kServerValidity);
  if (!server) {
    return std::unexpected(server.error());
  }
  if (auto ok = write_credentials(*server, files.server_certificate, files.server_key); !ok) {
    return std::unexpected(ok.error());
  }
  files.issued_server_certificate = true;
  return files;
}

}  // namespace tranche
