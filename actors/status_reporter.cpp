#include "actors/status_reporter.hpp"

#include <caf/event_based_actor.hpp>

namespace tandem::actors {
namespace {

using StatusDone = std::function<void(Result<cluster::DirectoryStatus>)>;

// A one-shot actor: asks once, hands the answer on, quits. Spawned with its inputs as
// arguments: CAF 0.17 dereferences a null argument tuple for an actor spawned without any,
// which UBSan reports (a capturing lambda alone triggers it).
void reporter(caf::event_based_actor* self, directory_actor directory, cluster::DirectoryStatusRequest request,
              std::chrono::milliseconds timeout, StatusDone done) {
  self->request(directory, timeout, std::move(request))
      .then(
          [self, done](cluster::DirectoryStatus& status) {
            done(std::move(status));
            self->quit();
          },
          [self, done](caf::error& err) {
            done(Status::Unavailable("the directory did not answer: " + self->system().render(err)));
            self->quit();
          });
}

}  // namespace

void report_status(caf::actor_system& system, const directory_actor& directory, std::chrono::milliseconds channel_timeout,
                   std::function<void(Result<cluster::DirectoryStatus>)> done) {
  cluster::DirectoryStatusRequest request;
  request.set_channels(true);
  request.set_channel_timeout_ms(static_cast<uint32_t>(channel_timeout.count()));
  const auto timeout = channel_timeout + std::chrono::seconds(1);
  system.spawn(reporter, directory, std::move(request), timeout, std::move(done));
}

}  // namespace tandem::actors
