#include "runtime/ivm/journal.hpp"

#include <algorithm>
#include <chrono>

namespace tandem::ivm {

DeltaJournal::DeltaJournal(size_t max_bytes, int wait_ms) : max_bytes_(max_bytes), wait_ms_(wait_ms) {}

size_t DeltaJournal::batch_bytes(const DeltaBatch& b) {
  size_t n = sizeof(DeltaBatch) + b.mutation_id.size();
  for (const auto& d : b.deltas) {
    n += sizeof(RowDelta) + d.table.size();
    if (d.old_row) for (const auto& v : *d.old_row) n += v.footprint();
    if (d.new_row) for (const auto& v : *d.new_row) n += v.footprint();
  }
  return n;
}

Status DeltaJournal::append(BatchPtr batch) {
  if (!batch) return Status::InvalidArgument("journal: null batch");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (batch->db_version <= last_version_)
      return Status::InvalidArgument("journal: batch db_version " + std::to_string(batch->db_version) +
                                     " is not after " + std::to_string(last_version_));
    size_t bytes = batch_bytes(*batch);
    last_version_ = batch->db_version;
    entries_.emplace_back(std::move(batch), bytes);
    bytes_ += bytes;
    trim_locked();
  }
  appended_.notify_all();
  return Status::Ok();
}

void DeltaJournal::note_version(int64_t version) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (version > last_version_) last_version_ = version;
  }
  appended_.notify_all();
}

void DeltaJournal::mark_gap(int64_t after, int64_t version) {
  if (version <= after) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_version_ = std::max(last_version_, version);
    dropped_through_ = std::max(dropped_through_, version);
    // Every entry is older than the gap: no reader can use it past a rehydration.
    for (const auto& e : entries_) bytes_ -= e.second;
    entries_.clear();
  }
  appended_.notify_all();
}

int64_t DeltaJournal::last_version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_version_;
}

int64_t DeltaJournal::register_reader(int64_t from_version) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t id = next_reader_++;
  readers_[id] = from_version;
  return id;
}

void DeltaJournal::unregister_reader(int64_t reader) {
  std::lock_guard<std::mutex> lock(mu_);
  readers_.erase(reader);
  trim_locked();
}

void DeltaJournal::advance(int64_t reader, int64_t version) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = readers_.find(reader);
  if (it == readers_.end()) return;
  if (version > it->second) it->second = version;
  trim_locked();
}

void DeltaJournal::reset_reader(int64_t reader, int64_t version) {
  std::lock_guard<std::mutex> lock(mu_);
  readers_[reader] = version;
  trim_locked();
}

void DeltaJournal::trim_locked() {
  int64_t min_reader = last_version_;
  for (const auto& [id, v] : readers_) min_reader = std::min(min_reader, v);
  // Compensation of a reader at V reads batches > V: everything <= min_reader is unneeded.
  while (!entries_.empty() && (entries_.front().first->db_version <= min_reader || bytes_ > max_bytes_)) {
    dropped_through_ = std::max(dropped_through_, entries_.front().first->db_version);
    bytes_ -= entries_.front().second;
    entries_.pop_front();
  }
}

Result<std::vector<BatchPtr>> DeltaJournal::range(int64_t after, int64_t upto) const {
  std::unique_lock<std::mutex> lock(mu_);
  if (upto > last_version_) {
    bool ok = appended_.wait_for(lock, std::chrono::milliseconds(wait_ms_), [&] { return last_version_ >= upto; });
    if (!ok)
      return Status::Unavailable("journal: db_version " + std::to_string(upto) + " was never appended (last " +
                                 std::to_string(last_version_) + ")");
  }
  if (after < dropped_through_ && upto > after) {
    // Some batch in (after, dropped_through_] may have been dropped.
    return Status::ResourceExhausted("journal: the reader fell behind (batches up to " +
                                     std::to_string(dropped_through_) + " were dropped); rehydrate");
  }
  std::vector<BatchPtr> out;
  auto it = std::upper_bound(entries_.begin(), entries_.end(), after,
                             [](int64_t v, const std::pair<BatchPtr, size_t>& e) { return v < e.first->db_version; });
  for (; it != entries_.end() && it->first->db_version <= upto; ++it) out.push_back(it->first);
  return out;
}

std::vector<BatchPtr> DeltaJournal::since(int64_t after) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<BatchPtr> out;
  for (const auto& e : entries_)
    if (e.first->db_version > after) out.push_back(e.first);
  return out;
}

Result<int64_t> DeltaJournal::next_version(int64_t after) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (after < dropped_through_)
    return Status::ResourceExhausted("journal: the reader fell behind (batches up to " + std::to_string(dropped_through_) +
                                     " were dropped); rehydrate");
  auto it = std::upper_bound(entries_.begin(), entries_.end(), after,
                             [](int64_t v, const std::pair<BatchPtr, size_t>& e) { return v < e.first->db_version; });
  return it == entries_.end() ? int64_t{-1} : it->first->db_version;
}

size_t DeltaJournal::retained_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t DeltaJournal::retained_batches() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace tandem::ivm
