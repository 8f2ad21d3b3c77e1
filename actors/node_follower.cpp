#include "actors/node_follower.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <caf/all.hpp>
#include <map>

#include "actors/node_proxy.hpp"
#include "runtime/ivm/journal.hpp"
#include "runtime/node/wire.hpp"
#include "runtime/sqlite/proto_value.hpp"

namespace tandem {

Result<std::unique_ptr<NodeFollower>> NodeFollower::join(caf::actor_system& system, NodeFollowerConfig config) {
  if (!config.journal || !config.proxy) return Status::InvalidArgument("a node follower needs a journal and a proxy");
  const std::string secret_file = node::secret_path(config.database_path);
  TANDEM_ASSIGN_OR_RETURN(int fd, node::connect_unix(node::socket_path(config.database_path)));
  std::unique_ptr<NodeFollower> f(new NodeFollower());
  f->fd_ = fd;
  f->system_ = &system;
  f->config_ = std::move(config);
  auto frames = std::make_shared<node::FrameReader>();
  f->frames_ = frames;
  auto fail = [&](Status s) -> Result<std::unique_ptr<NodeFollower>> {
    ::close(f->fd_);
    f->fd_ = -1;
    return s;
  };
  auto hello = node::read_frame(fd, *frames, f->config_.handshake_timeout);
  if (!hello.ok()) return fail(hello.status());
  if (!hello->has_hello()) return fail(Status::Unavailable("the node socket's first frame is not a hello"));
  f->leader_pid_ = hello->hello().leader_pid();
  auto secret = node::read_secret(secret_file);
  if (!secret.ok()) return fail(secret.status().with_context("cannot join the node's leader process (pid " + std::to_string(f->leader_pid_) + ")"));
  Status sent = node::write_frame(fd, node::make_join(*secret, hello->hello(), f->config_.schema, f->config_.name, f->config_.sync));
  if (!sent.ok()) return fail(sent);
  auto welcome = node::read_frame(fd, *frames, f->config_.handshake_timeout + std::chrono::seconds(30));
  if (!welcome.ok()) return fail(welcome.status());
  if (!welcome->has_welcome()) return fail(Status::Unavailable("the leader answered the join with something else"));
  Status accepted = from_proto(welcome->welcome().error());
  if (!accepted.ok())
    return fail(Status(accepted.code(), "the node's leader process (pid " + std::to_string(f->leader_pid_) + ") refused this process: " + accepted.message()));
  f->online_ = welcome->welcome().online();
  f->joined_at_ = welcome->welcome().db_version();
  // Commits this journal never received (a dead leader's last ones) are a gap: views behind
  // it rehydrate. Marked before the reader thread appends what follows the Welcome.
  f->config_.journal->mark_gap(f->config_.journal->last_version(), f->joined_at_);
  caf::anon_send(f->config_.proxy, attach_remote_atom::value, fd);
  f->reader_ = std::thread([raw = f.get()] { raw->read_loop(); });
  return f;
}

void NodeFollower::read_loop() {
  auto& frames = *std::static_pointer_cast<node::FrameReader>(frames_);
  Status why;
  for (;;) {
    auto e = node::read_frame(fd_, frames, std::nullopt);
    if (!e.ok()) {
      why = e.status();
      break;
    }
    if (e->has_deltas()) {
      // Journal first (docs/ivm.md): the answer to the write that made this commit follows it.
      const auto& b = e->deltas();
      if (b.deltas_size() == 0) {
        config_.journal->note_version(b.db_version());
      } else {
        Status s = config_.journal->append(std::make_shared<const DeltaBatch>(from_proto(b)));
        if (!s.ok()) spdlog::error("{}: journal refused version {}: {}", config_.name, b.db_version(), s.to_string());
      }
    }
    caf::anon_send(config_.proxy, std::move(*e));
  }
  const std::string lost = "the node's leader process (pid " + std::to_string(leader_pid_) + ") is gone: " + why.message();
  if (closing_) return;
  // The owner hears of the loss before the requests waiting on the leader fail, so that
  // whoever sees such a failure can tell it from a refusal.
  if (config_.on_leader_lost) config_.on_leader_lost(Status::Unavailable(lost));
  caf::anon_send(config_.proxy, lost_atom::value, lost);
}

NodeFollower::~NodeFollower() {
  closing_ = true;
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
  if (reader_.joinable()) reader_.join();
  // The proxy may still write to fd_ until it handles the detach: close only after it
  // answered (or ended), so the descriptor's number is never reused under a writer.
  if (fd_ >= 0) {
    caf::scoped_actor self{*system_};
    self->request(config_.proxy, std::chrono::seconds(30), detach_atom::value).receive([](bool) {}, [](caf::error&) {});
    ::close(fd_);
  }
}

}  // namespace tandem
