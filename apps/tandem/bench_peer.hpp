// A raw sync-protocol peer for the benches that drive `tandem server` children over
// WebSocket without a database (bench sync, bench cluster): it counts what it receives and
// acknowledges forwards. Thread-safe counters; the handler runs on the event loop's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "proto/sync.pb.h"
#include "runtime/auth/token.hpp"
#include "runtime/net/websocket.hpp"
#include "runtime/store/store.hpp"
#include "runtime/sync/frames.hpp"

namespace tandem::app {

// A token of `user` signed with `secret`, valid for an hour.
inline std::string bench_token(const std::string& secret, const std::string& user) {
  return *auth::mint_token(secret, user, std::chrono::hours(1));
}


inline SiteId bench_site(uint32_t n) {
  SiteId s{};
  s[0] = 0xBE;
  s[12] = static_cast<uint8_t>(n >> 24);
  s[13] = static_cast<uint8_t>(n >> 16);
  s[14] = static_cast<uint8_t>(n >> 8);
  s[15] = static_cast<uint8_t>(n);
  return s;
}

// ---- a raw protocol peer (no database): counts what it receives, acks forwards ----
struct RawPeer {
  std::shared_ptr<net::Connection> conn;
  std::atomic<bool> welcomed{false};
  std::atomic<uint64_t> acked_seq{0};
  std::atomic<int64_t> forwarded_to{0};    // highest forward to_db_version received
  std::atomic<int64_t> forwarded_changes{0};
  std::atomic<bool> failed{false};
  std::function<void(RawPeer&, const sync::Envelope&)> on_envelope;
  std::mutex down_mu;
  std::condition_variable down_cv;
  bool down = false;  // on_close was called

  net::Handler handler() {
    net::Handler h;
    h.on_frame = [this](std::string f) {
      sync::Envelope e;
      if (!e.ParseFromString(f)) return;
      if (e.has_welcome()) welcomed = true;
      if (e.has_ack()) acked_seq = e.ack().seq();
      if (e.has_forward()) {
        forwarded_changes += e.forward().batch().changes_size();
        forwarded_to = e.forward().batch().to_db_version();
        sync::Envelope a;
        a.mutable_client_ack()->set_seq(e.forward().seq());
        a.mutable_client_ack()->set_server_db_version(e.forward().batch().to_db_version());
        conn->send(sync_frames::encode(a));
      }
      if (e.has_error()) failed = true;
      if (on_envelope) on_envelope(*this, e);
    };
    h.on_close = [this](const Status&) {
      std::lock_guard<std::mutex> lock(down_mu);
      down = true;
      down_cv.notify_all();
    };
    return h;
  }
  // The handler runs on the loop's thread and points at this peer: the connection is dropped
  // and its end awaited (after on_close no frame is delivered), so a forward still arriving
  // never reaches a destroyed peer. The loop must still run.
  ~RawPeer() {
    if (!conn) return;
    conn->abort();
    std::unique_lock<std::mutex> lock(down_mu);
    down_cv.wait_for(lock, std::chrono::seconds(10), [this] { return down; });
  }
  RawPeer() = default;
  RawPeer(const RawPeer&) = delete;
  RawPeer& operator=(const RawPeer&) = delete;
  void hello(const std::string& tok, const SiteId& site, const std::string& schema) {
    sync::Envelope e;
    auto* h = e.mutable_hello();
    h->set_protocol_version(1);
    h->set_token(tok);
    h->set_site_id(site_bytes(site));
    h->add_schema(schema);
    conn->send(sync_frames::encode(e));
  }
};

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}


}  // namespace tandem::app
