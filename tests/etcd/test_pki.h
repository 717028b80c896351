// Certificates for TLS tests, made with the openssl command line into a
// folder: a CA, a server certificate for 127.0.0.1 (subjectAltName
// IP:127.0.0.1 and DNS:localhost, as etcd on loopback presents it), a client
// certificate of the same CA (for etcd's --client-cert-auth), and a second,
// unrelated CA (a client trusting it must refuse the server). ECDSA P-256,
// valid for two days. No test framework needed (etcd_process.h uses it).
#pragma once
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

namespace veer::test {

struct TestPki {
  std::string ca, server_cert, server_key, client_cert, client_key;
  std::string other_ca;  // a CA that signed none of these
};

inline TestPki make_test_pki(const std::string& dir) {
  const std::string log = dir + "/openssl.log";
  auto run = [&](const std::string& command) {
    if (std::system((command + " >>'" + log + "' 2>&1").c_str()) != 0)
      throw std::runtime_error("openssl failed (see " + log + "): " + command);
  };
  auto write = [](const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  };
  const std::string d = "'" + dir + "/";
  const std::string key = "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2";
  auto make_ca = [&](const std::string& name) {
    run(key + " -x509 -subj /CN=veer-test-" + name + " -keyout " + d + name + ".key' -out " + d + name +
        ".pem' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
  };
  auto make_leaf = [&](const std::string& name, const std::string& extensions) {
    write(dir + "/" + name + ".ext", extensions);
    run(key + " -subj /CN=veer-test-" + name + " -keyout " + d + name + ".key' -out " + d + name + ".csr'");
    run("openssl x509 -req -days 2 -in " + d + name + ".csr' -CA " + d + "ca.pem' -CAkey " + d +
        "ca.key' -CAcreateserial -out " + d + name + ".pem' -extfile " + d + name + ".ext'");
  };
  make_ca("ca");
  make_ca("other-ca");
  // clientAuth too: etcd 3.4's JSON gateway calls etcd's own gRPC over TLS
  // presenting the server certificate, and --client-cert-auth checks it.
  make_leaf("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
  make_leaf("client", "extendedKeyUsage=clientAuth\n");
  return TestPki{dir + "/ca.pem",     dir + "/server.pem", dir + "/server.key",
                 dir + "/client.pem", dir + "/client.key", dir + "/other-ca.pem"};
}

}  // namespace veer::test
