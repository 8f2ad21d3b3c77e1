#include "runtime/ivm/operators/result_store.hpp"

namespace tandem::ivm {

void ResultStore::init(bool ordered_internally, bool report_positions, std::vector<bool> desc, int64_t offset,
                       int64_t limit, bool prefix_mode) {
  ordered_ = ordered_internally;
  positions_ = report_positions;
  less_ = EntryLess{std::move(desc)};
  order_ = OrderTree(less_);
  offset_ = offset;
  limit_ = limit;
  prefix_ = prefix_mode;
  complete_ = !prefix_mode;
  // Ordered views without LIMIT/OFFSET show the whole order: their changes are emitted per
  // operation with ranks from the tree. Windows are diffed (O(window)) at each flush.
  incremental_ = positions_ && limit_ < 0 && offset_ == 0;
}

void ResultStore::upsert(std::string key, Row row, Row order) {
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    note_before(it->first, &it->second->row);
    if (incremental_ && tracking_) flush_deferred();
    int64_t old_rank = incremental_ && tracking_ ? static_cast<int64_t>(order_.order_of_key(it->second.get())) : -1;
    bool same = identical(it->second->row, row);
    if (ordered_) order_.erase(it->second.get());
    bytes_ -= entry_bytes(*it->second);
    it->second->row = std::move(row);
    it->second->order = std::move(order);
    bytes_ += entry_bytes(*it->second);
    if (ordered_) order_.insert(it->second.get());
    dirty_ = true;
    if (old_rank >= 0) {
      int64_t rank = static_cast<int64_t>(order_.order_of_key(it->second.get()));
      if (!same || rank != old_rank) ops_.push_back({RowChangeRecord::Kind::changed, key, it->second->row, rank, old_rank});
    }
    return;
  }
  note_before(key, nullptr);
  auto e = std::make_unique<Entry>();
  e->key = std::move(key);
  e->row = std::move(row);
  e->order = std::move(order);
  Entry* raw = e.get();
  bytes_ += entry_bytes(*raw);
  std::string k = raw->key;
  entries_.emplace(std::move(k), std::move(e));
  if (ordered_) order_.insert(raw);
  dirty_ = true;
  if (incremental_ && tracking_) {
    int64_t rank = static_cast<int64_t>(order_.order_of_key(raw));
    if (deferred_ && deferred_->key == raw->key) {
      // Removed and added again in one step: one CHANGED (remove at old, insert at new).
      if (!identical(deferred_->row, raw->row) || deferred_->position != rank)
        ops_.push_back({RowChangeRecord::Kind::changed, raw->key, raw->row, rank, deferred_->position});
      deferred_.reset();
    } else {
      flush_deferred();
      ops_.push_back({RowChangeRecord::Kind::added, raw->key, raw->row, rank, -1});
    }
  }
}

void ResultStore::erase(const std::string& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  note_before(key, &it->second->row);
  if (incremental_ && tracking_) {
    flush_deferred();
    deferred_ = RowChangeRecord{RowChangeRecord::Kind::removed, key, it->second->row,
                                static_cast<int64_t>(order_.order_of_key(it->second.get())), -1};
  }
  if (ordered_) order_.erase(it->second.get());
  bytes_ -= entry_bytes(*it->second);
  entries_.erase(it);
  dirty_ = true;
}

void ResultStore::trim(size_t keep) {
  while (entries_.size() > keep) {
    Entry* e = *std::prev(order_.end());
    std::string k = e->key;
    erase(k);
    complete_ = false;
  }
}

void ResultStore::set_tracking(bool on) {
  tracking_ = on;
  ops_.clear();
  deferred_.reset();
  if (on && positions_ && !incremental_) snapshot_visible();
}

void ResultStore::flush(std::vector<RowChangeRecord>* out) {
  if (!tracking_) { before_.clear(); dirty_ = false; return; }
  if (incremental_) {
    flush_deferred();
    for (auto& op : ops_) out->push_back(std::move(op));
    ops_.clear();
    before_.clear();
    dirty_ = false;
    return;
  }
  if (!dirty_) { before_.clear(); return; }
  dirty_ = false;
  if (!positions_) {
    if (!ordered_) {
      for (auto& [key, before] : before_) {
        const Entry* now = find(key);
        emit_unordered(key, before, now ? std::optional<Row>(now->row) : std::nullopt, out);
      }
    } else {
      // Unordered LIMIT: compare visible sets.
      std::unordered_map<std::string, Row> now;
      for_each_visible([&](const Entry& e) { now.emplace(e.key, e.row); });
      for (const auto& [key, row] : visible_set_)
        if (!now.count(key)) out->push_back({RowChangeRecord::Kind::removed, key, row, -1, -1});
      for (const auto& [key, row] : now) {
        auto it = visible_set_.find(key);
        if (it == visible_set_.end()) out->push_back({RowChangeRecord::Kind::added, key, row, -1, -1});
        else if (!identical(it->second, row)) out->push_back({RowChangeRecord::Kind::changed, key, row, -1, -1});
      }
      visible_set_ = std::move(now);
    }
    before_.clear();
    return;
  }
  before_.clear();
  diff_visible(out);
}

void ResultStore::flush_deferred() {
  if (!deferred_) return;
  ops_.push_back(std::move(*deferred_));
  deferred_.reset();
}

size_t ResultStore::entry_bytes(const Entry& e) {
  return sizeof(Entry) + e.key.capacity() + row_bytes(e.row) + row_bytes(e.order);
}

void ResultStore::note_before(const std::string& key, const Row* row) {
  if (!tracking_ || positions_ || ordered_) return;
  if (before_.count(key)) return;
  before_.emplace(key, row ? std::optional<Row>(*row) : std::nullopt);
}

void ResultStore::emit_unordered(const std::string& key, const std::optional<Row>& before,
                                 const std::optional<Row>& after, std::vector<RowChangeRecord>* out) {
  if (same_row(before, after)) return;
  if (!before) out->push_back({RowChangeRecord::Kind::added, key, *after, -1, -1});
  else if (!after) out->push_back({RowChangeRecord::Kind::removed, key, *before, -1, -1});
  else out->push_back({RowChangeRecord::Kind::changed, key, *after, -1, -1});
}

void ResultStore::snapshot_visible() {
  last_visible_.clear();
  for_each_visible([&](const Entry& e) { last_visible_.emplace_back(e.key, e.row); });
  if (!positions_) {
    visible_set_.clear();
    for (auto& [k, r] : last_visible_) visible_set_.emplace(k, r);
  }
}

// Emits a change list that turns the previous visible list into the current one when
// applied in order: removals (from the back), then insertions and moves front to back.
void ResultStore::diff_visible(std::vector<RowChangeRecord>* out) {
  std::vector<std::pair<std::string, Row>> now;
  for_each_visible([&](const Entry& e) { now.emplace_back(e.key, e.row); });
  std::unordered_map<std::string, size_t> now_index;
  for (size_t i = 0; i < now.size(); ++i) now_index.emplace(now[i].first, i);
  std::vector<std::string> list;  // keys of the list as the receiver holds it
  for (int64_t i = static_cast<int64_t>(last_visible_.size()) - 1; i >= 0; --i) {
    const auto& [key, row] = last_visible_[static_cast<size_t>(i)];
    if (!now_index.count(key)) out->push_back({RowChangeRecord::Kind::removed, key, row, i, -1});
  }
  std::unordered_map<std::string, const Row*> old_rows;
  for (const auto& [key, row] : last_visible_) {
    if (now_index.count(key)) {
      list.push_back(key);
      old_rows.emplace(key, &row);
    }
  }
  for (size_t i = 0; i < now.size(); ++i) {
    const auto& [key, row] = now[i];
    auto it = old_rows.find(key);
    if (it == old_rows.end()) {
      list.insert(list.begin() + static_cast<std::ptrdiff_t>(i), key);
      out->push_back({RowChangeRecord::Kind::added, key, row, static_cast<int64_t>(i), -1});
      continue;
    }
    size_t j = i;
    while (j < list.size() && list[j] != key) ++j;
    if (j != i) {
      list.erase(list.begin() + static_cast<std::ptrdiff_t>(j));
      list.insert(list.begin() + static_cast<std::ptrdiff_t>(i), key);
    }
    if (j != i || !identical(*it->second, row))
      out->push_back({RowChangeRecord::Kind::changed, key, row, static_cast<int64_t>(i), static_cast<int64_t>(j)});
  }
  last_visible_ = std::move(now);
}

}  // namespace tandem::ivm
