#include "common/tls_files.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace tranche {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::vector<std::string> kLoopback = {"127.0.0.1", "::1", "localhost"};

std::string content(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

mode_t mode_of(const fs::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 0777) : 0;
}

class TlsFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "tranche-tls-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
};

TEST(TlsCertificates, AServerCertificateServesExactlyTheHostsItWasIssuedFor) {
  auto ca = create_certificate_authority("test CA");
  ASSERT_TRUE(ca) << ca.error().describe();
  auto server = issue_server_certificate(*ca, {"127.0.0.1", "::1", "localhost", "controller.example"}, 24h);
  ASSERT_TRUE(server) << server.error().describe();
  EXPECT_NE(server->certificate.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_NE(server->private_key.find("BEGIN PRIVATE KEY"), std::string::npos);

  for (const std::string host : {"127.0.0.1", "::1", "localhost", "controller.example"}) {
    EXPECT_EQ(certificate_serves(server->certificate, ca->certificate, {host}, 1h), true) << host;
  }
  for (const std::string host : {"127.0.0.2", "10.0.0.1", "::2", "example.com", "x.controller.example"}) {
    EXPECT_EQ(certificate_serves(server->certificate, ca->certificate, {host}, 1h), false) << host;
  }
}

TEST(TlsCertificates, ACertificateOfAnotherCaOrNearItsEndDoesNotServe) {
  auto ca = create_certificate_authority("test CA");
  auto other = create_certificate_authority("other CA");
  ASSERT_TRUE(ca && other);
  auto server = issue_server_certificate(*ca, kLoopback, 24h);
  ASSERT_TRUE(server) << server.error().describe();
  EXPECT_EQ(certificate_serves(server->certificate, other->certificate, kLoopback, 1h), false);
  EXPECT_EQ(certificate_serves(server->certificate, ca->certificate, kLoopback, 23h), true);
  EXPECT_EQ(certificate_serves(server->certificate, ca->certificate, kLoopback, 25h), false);
}

TEST(TlsCertificates, HostsThatAreNeitherAddressesNorNamesAreRefused) {
  auto ca = create_certificate_authority("test CA");
  ASSERT_TRUE(ca);
  // A comma would smuggle another entry into the subjectAltName.
  auto smuggled = issue_server_certificate(*ca, {"localhost,DNS:evil.example"}, 24h);
  ASSERT_FALSE(smuggled);
  EXPECT_EQ(smuggled.error().field, "hosts");
  // Unspecified listen addresses are left out, and alone they name nothing.
  EXPECT_FALSE(issue_server_certificate(*ca, {"0.0.0.0"}, 24h));
  auto wildcard_listen = issue_server_certificate(*ca, {"0.0.0.0", "localhost"}, 24h);
  ASSERT_TRUE(wildcard_listen);
  EXPECT_EQ(certificate_serves(wildcard_listen->certificate, ca->certificate, {"localhost"}, 1h), true);
}

TEST(TlsCertificates, GarbageIsNotACertificate) {
  auto ca = create_certificate_authority("test CA");
  ASSERT_TRUE(ca);
  EXPECT_FALSE(certificate_serves("not a certificate", ca->certificate, kLoopback, 1h));
  EXPECT_FALSE(issue_server_certificate(PemCredentials{ca->certificate, "not a key"}, kLoopback, 24h));
}

TEST_F(TlsFilesTest, DevFilesAreMadeOnceWithPrivateKeysAndReused) {
  auto first = ensure_dev_tls_files(dir_, kLoopback);
  ASSERT_TRUE(first) << first.error().describe();
  EXPECT_TRUE(first->created_ca);
  EXPECT_TRUE(first->issued_server_certificate);
  EXPECT_EQ(first->ca_certificate, dir_ / "ca.crt");
  EXPECT_EQ(mode_of(dir_ / "ca.key"), 0600u);
  EXPECT_EQ(mode_of(first->server_key), 0600u);
  EXPECT_EQ(certificate_serves(content(first->server_certificate), content(first->ca_certificate), kLoopback, 1h),
            true);

  const std::string ca = content(dir_ / "ca.crt");
  const std::string server = content(first->server_certificate);
  auto again = ensure_dev_tls_files(dir_, kLoopback);
  ASSERT_TRUE(again) << again.error().describe();
  EXPECT_FALSE(again->created_ca);
  EXPECT_FALSE(again->issued_server_certificate);
  EXPECT_EQ(content(dir_ / "ca.crt"), ca);
  EXPECT_EQ(content(again->server_certificate), server);
}

TEST_F(TlsFilesTest, ANewListenHostGetsANewServerCertificateFromTheSameCa) {
  ASSERT_TRUE(ensure_dev_tls_files(dir_, kLoopback));
  const std::string ca = content(dir_ / "ca.crt");
  std::vector<std::string> hosts = kLoopback;
  hosts.push_back("192.0.2.7");
  auto moved = ensure_dev_tls_files(dir_, hosts);
  ASSERT_TRUE(moved) << moved.error().describe();
  EXPECT_FALSE(moved->created_ca);
  EXPECT_TRUE(moved->issued_server_certificate);
  EXPECT_EQ(content(dir_ / "ca.crt"), ca);
  EXPECT_EQ(certificate_serves(content(moved->server_certificate), ca, hosts, 1h), true);
}

TEST_F(TlsFilesTest, AServerKeyThatIsNotTheCertificatesIsReplaced) {
  auto first = ensure_dev_tls_files(dir_, kLoopback);
  ASSERT_TRUE(first);
  auto stranger = create_certificate_authority("stranger");
  ASSERT_TRUE(stranger);
  std::ofstream(first->server_key) << stranger->private_key;
  auto again = ensure_dev_tls_files(dir_, kLoopback);
  ASSERT_TRUE(again) << again.error().describe();
  EXPECT_TRUE(again->issued_server_certificate);
  EXPECT_NE(content(again->server_key), stranger->private_key);
}

TEST_F(TlsFilesTest, ACaWhoseKeyIsGoneIsNotReplacedSilently) {
  ASSERT_TRUE(ensure_dev_tls_files(dir_, kLoopback));
  const std::string ca = content(dir_ / "ca.crt");
  fs::remove(dir_ / "ca.key");
  auto refused = ensure_dev_tls_files(dir_, kLoopback);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("ca.key"), std::string::npos) << refused.error().message;
  EXPECT_EQ(content(dir_ / "ca.crt"), ca);
}

}  // namespace
}  // namespace tranche
