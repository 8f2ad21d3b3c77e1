#include "runtime/ivm/result_list.hpp"

#include <algorithm>

#include "runtime/sqlite/proto_value.hpp"

namespace tandem::ivm {

void ResultList::reset(const view::WatchResponse& initial) {
  ordered_ = initial.ordered();
  columns_.assign(initial.columns().begin(), initial.columns().end());
  rows_.clear();
  for (const auto& r : initial.rows()) rows_.emplace_back(r.key(), from_proto(r.row()));
}

size_t ResultList::find(const std::string& key) const {
  for (size_t i = 0; i < rows_.size(); ++i)
    if (rows_[i].first == key) return i;
  return rows_.size();
}

Status ResultList::apply(const view::RowChange& c) {
  auto at_position = [&](size_t fallback) {
    return ordered_ && c.position() >= 0 ? std::min(static_cast<size_t>(c.position()), rows_.size()) : fallback;
  };
  switch (c.kind()) {
    case view::RowChange::ADDED:
      rows_.insert(rows_.begin() + static_cast<std::ptrdiff_t>(at_position(rows_.size())), {c.key(), from_proto(c.row())});
      return Status::Ok();
    case view::RowChange::REMOVED:
    case view::RowChange::CHANGED: {
      size_t at = find(c.key());
      if (at == rows_.size()) return Status::Internal("a change names a row the result does not hold");
      rows_.erase(rows_.begin() + static_cast<std::ptrdiff_t>(at));
      if (c.kind() == view::RowChange::CHANGED)
        rows_.insert(rows_.begin() + static_cast<std::ptrdiff_t>(at_position(std::min(at, rows_.size()))),
                     {c.key(), from_proto(c.row())});
      return Status::Ok();
    }
    default: return Status::InvalidArgument("unknown row change kind");
  }
}

Status ResultList::apply(const view::ViewChange& change) {
  Status first;
  for (const auto& c : change.changes()) {
    Status s = apply(c);
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

}  // namespace tandem::ivm
