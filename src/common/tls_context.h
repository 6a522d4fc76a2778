#pragma once
// TLS settings of the controller (server) and of its clients (the CLI and
// agents), on OpenSSL's own types so that the server, the client and the
// agent, each on its own Asio stream, share one implementation.

#include <openssl/types.h>

#include <string>

#include "common/error.h"

namespace tranche {

// A client verifies the server's chain against `ca_file` alone (the pinned
// CA), or against the system's CAs when `ca_file` is empty. TLS 1.2 or later.
Status configure_tls_client(SSL_CTX* context, const std::string& ca_file);

// Per connection: the server's certificate must name `host` (an IP address
// is matched against the certificate's IP addresses; a DNS name against its
// DNS names, and is sent as SNI).
Status expect_server_name(SSL* connection, const std::string& host);

// A server presents the certificate chain of `certificate_file` with the key
// of `key_file` (PEM); refused when the key is not the certificate's.
Status configure_tls_server(SSL_CTX* context, const std::string& certificate_file, const std::string& key_file);

// The first error OpenSSL queued (the cause; later ones are consequences),
// and the queue emptied so that it does not surface in an unrelated call.
std::string openssl_cause();

// Why a client's handshake failed, in an operator's words: the verification
// verdict when the server's certificate was refused ("certificate verify
// failed: unable to get local issuer certificate"), else `transport_error`.
std::string describe_handshake_failure(const SSL* connection, const std::string& transport_error);

}  // namespace tranche
