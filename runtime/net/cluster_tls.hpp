// The certificates of the cluster port (tandem server --cluster-cert/--cluster-key/--cluster-ca),
// checked before the actor system starts. caf-openssl reads these files again for every
// connection, from its multiplexer thread, and a file it cannot load there aborts the
// process (CAF_RAISE_ERROR); an encrypted key would make OpenSSL prompt on the terminal.
// So start-up proves that every file loads, that the key belongs to the certificate, and
// that the certificate is signed by the CA (a host whose own certificate the CA does not
// sign would be refused by every other member).
#pragma once

#include <string>

#include "runtime/common/status.hpp"

namespace tandem::net {

struct ClusterTlsFiles {
  std::string cert;  // PEM certificate chain of this host (leaf first)
  std::string key;   // PEM private key of `cert`, not encrypted
  std::string ca;    // PEM CA certificate(s): a peer is a member iff the CA signed its certificate
};

// Ok when all three files load as caf-openssl will load them, the key matches the certificate
// and the CA verifies the certificate; otherwise InvalidArgument naming the file and OpenSSL's
// reason. Pure, thread-safe (a fresh OpenSSL context per call).
Status check_cluster_tls(const ClusterTlsFiles& files);

}  // namespace tandem::net
