// A watcher's copy of a view's result, kept by applying ViewChanges as proto/view.proto says:
// REMOVED and CHANGED find the row by key; ADDED and CHANGED land at `position` in ordered
// views, at the end (ADDED) or in place (CHANGED) in unordered ones.
// Pure; used by `tandem client watch` and the scenario runner. Not thread-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "proto/view.pb.h"
#include "runtime/common/status.hpp"
#include "runtime/sqlite/value.hpp"

namespace tandem::ivm {

class ResultList {
 public:
  // Starts from a watch's initial result.
  void reset(const view::WatchResponse& initial);
  // Applies one change; a REMOVED or CHANGED key the list does not hold is an error (the
  // change is skipped, the list stays as it was).
  Status apply(const view::RowChange& change);
  Status apply(const view::ViewChange& change);

  bool ordered() const { return ordered_; }
  const std::vector<std::string>& columns() const { return columns_; }
  const std::vector<std::pair<std::string, Row>>& rows() const { return rows_; }  // (key, row) in order

 private:
  size_t find(const std::string& key) const;
  bool ordered_ = false;
  std::vector<std::string> columns_;
  std::vector<std::pair<std::string, Row>> rows_;
};

}  // namespace tandem::ivm
