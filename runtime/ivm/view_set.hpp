// ViewSet: the pure logic of one ui_view (a tab or window of a node): its own read connection,
// its live views, the pending overlay they share, and the view.proto messages they produce.
// actors/ui_view owns one and only moves messages; tests drive it without an actor system.
//
// Threading: one thread at a time (the ui_view actor's). The journal is the node's, shared
// with the db_worker that appends to it.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proto/view.pb.h"
#include "proto/worker.pb.h"
#include "runtime/ivm/view.hpp"

namespace tandem::ivm {

class ViewSet {
 public:
  // `origin` names this ui_view (mutation ids it assigns start with it; see add_pending).
  ViewSet(std::unique_ptr<Database> db, DeltaJournal* journal, std::string origin, ViewOptions options = {});

  // Parses (when given SQL), binds and hydrates a view; the response holds its columns and
  // initial rows. Refused queries come back as errors and create nothing.
  Result<view::WatchResponse> watch(const view::WatchRequest& request);
  Status unwatch(int64_t view_id);
  size_t size() const { return views_.size(); }

  // A fresh mutation id: "<origin>:<n>".
  std::string next_mutation_id();
  // Shows a pending mutation in every view (LiveView::add_pending). Validation happens before
  // any view changes: a malformed mutation changes nothing anywhere.
  Status add_pending(const std::string& mutation_id, const std::vector<worker::Mutation>& mutations,
                     const std::string& origin);
  Status settle(const std::string& mutation_id, bool success, int64_t db_version);
  // Applies every batch the journal holds to every view (rehydrating a view that fell off).
  Status catch_up();

  // The lowest version every view has applied (the journal's last version with no views).
  int64_t applied_version() const;
  // The changes of every view since the last call, one message per view that changed.
  std::vector<view::ViewChange> take_changes();
  // The current result of a view, keyed rows in order (for tests and snapshots).
  Result<std::vector<view::ResultRow>> snapshot(int64_t view_id) const;

 private:
  struct Entry {
    std::shared_ptr<const Plan> plan;
    std::unique_ptr<LiveView> view;
    bool reported_error = false;
  };

  std::unique_ptr<Database> db_;
  DeltaJournal* journal_;
  std::string origin_;
  ViewOptions options_;
  int64_t next_view_ = 1;
  int64_t next_mutation_ = 1;
  std::map<int64_t, Entry> views_;
  // Pending mutations, so that views created later show them too.
  struct PendingCopy {
    std::string id, origin;
    std::vector<worker::Mutation> mutations;
  };
  std::vector<PendingCopy> pending_;
};

}  // namespace tandem::ivm
