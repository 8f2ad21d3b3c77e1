// The link between server hosts (docs/operations.md, "Security between hosts"): how the
// directory is published on the cluster port and how other members' directories are
// reached, over CAF's BASP either inside TLS (caf-openssl) or, with --cluster-insecure,
// in the clear.
//
// With TLS every member holds a certificate signed by the cluster's CA and the CA file;
// caf-openssl then requires and verifies a certificate on both sides of every connection
// (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT), so a peer without a CA-signed
// certificate fails the TLS handshake and not one of its bytes reaches CAF's BASP parser
// (which trusts its input: malformed BASP crashed libcaf_io). All three files or none:
// caf-openssl with only some set aborts or falls back to an anonymous cipher. The transport
// underneath (cluster_link.cpp) adds a handshake deadline and keeps OpenSSL's error queue
// from leaking between connections.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <caf/fwd.hpp>
#include <caf/io/middleman_actor.hpp>

#include "actors/directory.hpp"
#include "runtime/net/cluster_tls.hpp"

namespace tandem::actors {

struct ClusterLinkConfig {
  net::ClusterTlsFiles tls;  // all set: TLS with certificates; all empty: plain BASP
  bool insecure = false;     // plain BASP was asked for explicitly (tests only)
  // TLS only: a connection whose handshake has not finished by then is closed, and at most
  // this many inbound ones may be unfinished at once (cluster_link.cpp explains why).
  std::chrono::milliseconds handshake_timeout{5000};
  size_t max_pending_handshakes = 64;
};

// Ok for TLS with files that load (net::check_cluster_tls) and no --cluster-insecure, or for
// no files with --cluster-insecure; InvalidArgument naming what is missing otherwise.
Status check_cluster_link(const ClusterLinkConfig& link);

// Loads the middleman (and, for TLS, caf-openssl with the certificates) into `cfg` and sets
// the BASP heartbeat. Call once, before the actor system is built, with a checked config.
void configure_cluster_link(caf::actor_system_config& cfg, const ClusterLinkConfig& link);

// With TLS, starts the cluster's own middleman actor (the guarded TLS transport, registered
// in the system for cluster_middleman) and returns it: send it an exit message at shutdown.
// Without TLS returns an invalid handle (CAF's plain middleman serves). Call once, after the
// system is built and before publish_directory.
caf::io::middleman_actor start_cluster_link(caf::actor_system& system, const ClusterLinkConfig& link);

// Publishes the directory on host:port through the cluster's middleman (start_cluster_link). Returns the bound port or CAF's error. Blocks until bound.
caf::expected<uint16_t> publish_directory(caf::actor_system& system, const directory_actor& directory, uint16_t port,
                                          const std::string& host);

// The middleman actor to send (connect_atom, host, port) to for another member: the guarded
// TLS one once start_cluster_link started it, else CAF's plain one. Any thread.
caf::io::middleman_actor cluster_middleman(caf::actor_system& system);

}  // namespace tandem::actors
