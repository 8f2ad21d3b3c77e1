// ResultStore: the rows a view shows, and the changes to them since the last flush.
//
// State: every result entry by key; for ordered results an order-statistics tree over them.
// Invariants:
//  - prefix mode (single-table ORDER BY + LIMIT windows) holds a prefix of the order plus a
//    boundary; `complete` says whether that prefix is the whole result. admits() refuses rows
//    past the last held one while the prefix is incomplete: they are not known to belong.
//  - changes are recorded against the visible state at the last flush, in one of three ways:
//    unordered results remember each touched key's row before the first change; ordered
//    results without LIMIT/OFFSET ("incremental") record one change per operation with ranks
//    from the tree; windows diff the visible list at the flush (O(window)).
// Threading: one owner (the view's thread).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/ivm/operators/rows.hpp"

namespace tandem::ivm {

class ResultStore {
 public:
  // `ordered_internally`: keep the order tree; `report_positions`: changes carry positions
  // (the query has ORDER BY); `desc` per ORDER BY key; limit -1 = none.
  void init(bool ordered_internally, bool report_positions, std::vector<bool> desc, int64_t offset, int64_t limit,
            bool prefix_mode);

  bool prefix() const { return prefix_; }
  bool complete() const { return complete_; }
  void set_complete(bool c) { complete_ = c; }
  size_t held() const { return entries_.size(); }
  const Entry* last() const { return order_.empty() ? nullptr : *std::prev(order_.end()); }
  EntryLess less() const { return less_; }

  // Prefix mode: a row beyond the last held one is outside the known prefix.
  bool admits(const Entry& e) const {
    if (!prefix_ || complete_ || order_.empty()) return !prefix_ || complete_;
    return less_(&e, *std::prev(order_.end()));
  }

  // Inserts or replaces the entry of `key` (takes the rows).
  void upsert(std::string key, Row row, Row order);
  void erase(const std::string& key);
  // Prefix mode: drops rows past `keep` (the prefix stays exact, only shorter).
  void trim(size_t keep);

  bool contains(const std::string& key) const { return entries_.count(key) != 0; }
  const Entry* find(const std::string& key) const {
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : it->second.get();
  }

  // Calls f(const Entry&) for each visible row: in order (after OFFSET, at most LIMIT) for
  // ordered results, in no particular order otherwise.
  template <class F>
  void for_each_visible(F&& f) const {
    if (!ordered_) {
      for (const auto& [k, e] : entries_) f(*e);
      return;
    }
    int64_t i = 0, shown = 0;
    for (const Entry* e : order_) {
      if (i++ < offset_) continue;
      if (limit_ >= 0 && shown >= limit_) break;
      ++shown;
      f(*e);
    }
  }

  // Turns change recording on (from the current visible state) or off (hydration).
  void set_tracking(bool on);
  // Appends the changes since the last flush to `out`.
  void flush(std::vector<RowChangeRecord>* out);

  size_t bytes() const { return bytes_ + entries_.size() * 64; }

 private:
  void flush_deferred();
  static size_t entry_bytes(const Entry& e);
  void note_before(const std::string& key, const Row* row);
  static void emit_unordered(const std::string& key, const std::optional<Row>& before, const std::optional<Row>& after,
                             std::vector<RowChangeRecord>* out);
  void snapshot_visible();
  void diff_visible(std::vector<RowChangeRecord>* out);

  bool ordered_ = false, positions_ = false, prefix_ = false, complete_ = true;
  bool tracking_ = false, dirty_ = false;
  int64_t offset_ = 0, limit_ = -1;
  std::unordered_map<std::string, std::unique_ptr<Entry>> entries_;
  EntryLess less_;
  OrderTree order_{EntryLess{}};
  bool incremental_ = false;
  std::vector<RowChangeRecord> ops_;           // incremental mode: changes since the last flush
  std::optional<RowChangeRecord> deferred_;    // a removal that the next insertion may turn into a move
  std::unordered_map<std::string, std::optional<Row>> before_;
  std::vector<std::pair<std::string, Row>> last_visible_;
  std::unordered_map<std::string, Row> visible_set_;
  size_t bytes_ = 0;
};

}  // namespace tandem::ivm
