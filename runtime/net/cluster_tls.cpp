#include "runtime/net/cluster_tls.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <cstdio>
#include <memory>

namespace tandem::net {
namespace {

// OpenSSL's error queue as one line (emptied), or `fallback` when it holds nothing.
std::string ssl_errors(const std::string& fallback) {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? fallback : out;
}

// A key file that needs a passphrase fails here instead of prompting on the terminal.
int no_passphrase(char*, int, int, void*) { return 0; }

Status readable(const std::string& flag, const std::string& path) {
  if (path.empty()) return Status::InvalidArgument(flag + " is empty");
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return Status::InvalidArgument(flag + " '" + path + "' cannot be read");
  return Status::Ok();
}

}  // namespace

Status check_cluster_tls(const ClusterTlsFiles& files) {
  for (auto [flag, path] : {std::pair{"--cluster-cert", &files.cert}, {"--cluster-key", &files.key}, {"--cluster-ca", &files.ca}}) {
    auto st = readable(flag, *path);
    if (!st.ok()) return st;
  }
  ERR_clear_error();
  std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> ctx(SSL_CTX_new(TLS_method()), &SSL_CTX_free);
  if (!ctx) return Status::Internal(ssl_errors("cannot create an OpenSSL context"));
  // What caf-openssl's session::create_ssl_context loads, checked one by one.
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), files.cert.c_str()) != 1)
    return Status::InvalidArgument("--cluster-cert '" + files.cert + "' is not a PEM certificate: " + ssl_errors("unreadable"));
  std::unique_ptr<BIO, int (*)(BIO*)> key_file(BIO_new_file(files.key.c_str(), "r"), &BIO_free);
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> key(
      key_file ? PEM_read_bio_PrivateKey(key_file.get(), nullptr, no_passphrase, nullptr) : nullptr, &EVP_PKEY_free);
  if (!key)
    return Status::InvalidArgument("--cluster-key '" + files.key +
                                   "' is not an unencrypted PEM private key: " + ssl_errors("unreadable"));
  if (SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1 || SSL_CTX_check_private_key(ctx.get()) != 1)
    return Status::InvalidArgument("--cluster-key '" + files.key + "' is not the key of --cluster-cert '" + files.cert +
                                   "': " + ssl_errors("mismatch"));
  if (SSL_CTX_load_verify_locations(ctx.get(), files.ca.c_str(), nullptr) != 1)
    return Status::InvalidArgument("--cluster-ca '" + files.ca + "' holds no PEM CA certificate: " + ssl_errors("unreadable"));
  // The members verify each other's certificate against the CA: this host's must pass too.
  X509* leaf = SSL_CTX_get0_certificate(ctx.get());
  STACK_OF(X509)* chain = nullptr;
  SSL_CTX_get0_chain_certs(ctx.get(), &chain);
  std::unique_ptr<X509_STORE_CTX, void (*)(X509_STORE_CTX*)> verify(X509_STORE_CTX_new(), &X509_STORE_CTX_free);
  if (!verify || X509_STORE_CTX_init(verify.get(), SSL_CTX_get_cert_store(ctx.get()), leaf, chain) != 1)
    return Status::Internal(ssl_errors("cannot set up certificate verification"));
  if (X509_verify_cert(verify.get()) != 1)
    return Status::InvalidArgument("--cluster-cert '" + files.cert + "' is not signed by --cluster-ca '" + files.ca +
                                   "': " + X509_verify_cert_error_string(X509_STORE_CTX_get_error(verify.get())));
  return Status::Ok();
}

}  // namespace tandem::net
