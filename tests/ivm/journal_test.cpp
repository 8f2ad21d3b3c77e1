// DeltaJournal: ordering, ranges, retention by readers, the memory bound, and a writer thread
// appending while readers wait for versions they saw in SQLite.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "runtime/ivm/journal.hpp"

namespace tandem::test {
namespace {

ivm::BatchPtr batch(int64_t version, size_t rows = 1) {
  DeltaBatch b;
  b.db_version = version;
  for (size_t i = 0; i < rows; ++i) {
    RowDelta d;
    d.table = "t";
    d.new_row = Row{Value::Integer(static_cast<int64_t>(i)), Value::Text(std::string(40, 'x'))};
    b.deltas.push_back(std::move(d));
  }
  return std::make_shared<const DeltaBatch>(std::move(b));
}

std::vector<int64_t> versions(const std::vector<ivm::BatchPtr>& bs) {
  std::vector<int64_t> v;
  for (const auto& b : bs) v.push_back(b->db_version);
  return v;
}

}  // namespace

TEST_CASE("the journal keeps batches in version order and serves ranges", "[ivm][journal]") {
  ivm::DeltaJournal j(1 << 20, 50);
  int64_t r = j.register_reader(0);
  REQUIRE(j.append(batch(1)).ok());
  REQUIRE(j.append(batch(3)).ok());  // gaps are allowed (a commit that changed nothing)
  REQUIRE(j.append(batch(3)).code() == StatusCode::invalid_argument);
  REQUIRE(j.append(batch(2)).code() == StatusCode::invalid_argument);
  REQUIRE(j.append(nullptr).code() == StatusCode::invalid_argument);
  auto all = j.range(0, 3);
  REQUIRE(all.ok());
  REQUIRE(versions(*all) == std::vector<int64_t>{1, 3});
  REQUIRE(versions(*j.range(1, 3)) == std::vector<int64_t>{3});
  REQUIRE(j.range(3, 3)->empty());
  // A version never appended: bounded wait, then unavailable.
  REQUIRE(j.range(3, 4).status().code() == StatusCode::unavailable);
  j.note_version(4);
  REQUIRE(j.range(3, 4)->empty());
  // Readers pin what they have not passed.
  j.advance(r, 1);
  REQUIRE(j.retained_batches() == 1);
  j.unregister_reader(r);
  REQUIRE(j.retained_batches() == 0);
}

TEST_CASE("a reader that lags past the memory bound must rehydrate", "[ivm][journal]") {
  ivm::DeltaJournal j(2000, 50);
  int64_t slow = j.register_reader(0);
  int64_t fast = j.register_reader(0);
  for (int64_t v = 1; v <= 50; ++v) {
    REQUIRE(j.append(batch(v)).ok());
    j.advance(fast, v);
  }
  REQUIRE(j.retained_bytes() <= 2000);
  REQUIRE(j.range(0, 50).status().code() == StatusCode::resource_exhausted);
  // After rehydrating at the latest version it reads on normally.
  j.reset_reader(slow, 50);
  REQUIRE(j.append(batch(51)).ok());
  REQUIRE(versions(*j.range(50, 51)) == std::vector<int64_t>{51});
}

TEST_CASE("a gap marked in the journal makes readers behind it rehydrate", "[ivm][journal]") {
  // A follower's journal after its leader died: commits up to 7 reached the new leader's
  // file but never this journal.
  ivm::DeltaJournal j(1 << 20, 50);
  int64_t behind = j.register_reader(0);
  REQUIRE(j.append(batch(1)).ok());
  REQUIRE(j.append(batch(2)).ok());
  j.mark_gap(2, 7);
  CHECK(j.last_version() == 7);
  CHECK(j.retained_batches() == 0);
  CHECK(j.next_version(2).status().code() == StatusCode::resource_exhausted);
  CHECK(j.range(2, 7).status().code() == StatusCode::resource_exhausted);
  // An empty range marks nothing.
  j.mark_gap(7, 7);
  CHECK(j.last_version() == 7);
  CHECK(j.next_version(7).ok());
  // Rehydrated at 7, the reader goes on with what follows.
  j.reset_reader(behind, 7);
  REQUIRE(j.append(batch(8)).ok());
  CHECK(*j.next_version(7) == 8);
  CHECK(versions(*j.range(7, 8)) == std::vector<int64_t>{8});
}

TEST_CASE("readers wait for a version committed but not yet appended", "[ivm][journal]") {
  // The writer commits, then appends: a reader that already saw version v in SQLite asks the
  // journal for v and must get it once the writer catches up, in order, without loss.
  ivm::DeltaJournal j(64u << 20, 10000);
  const int64_t n = 2000;
  std::vector<int64_t> readers;
  for (int i = 0; i < 3; ++i) readers.push_back(j.register_reader(0));
  std::atomic<int> failures{0};
  std::thread writer([&] {
    for (int64_t v = 1; v <= n; ++v)
      if (!j.append(batch(v, 1 + static_cast<size_t>(v % 3))).ok()) ++failures;
  });
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      int64_t at = 0;
      while (at < n) {
        int64_t upto = std::min(n, at + 1 + (at * 7 + i) % 13);
        auto r = j.range(at, upto);
        if (!r.ok() || r->empty() || r->back()->db_version != upto || r->front()->db_version != at + 1 ||
            static_cast<int64_t>(r->size()) != upto - at) {
          ++failures;
          return;
        }
        at = upto;
        j.advance(readers[static_cast<size_t>(i)], at);
      }
    });
  }
  writer.join();
  for (auto& t : threads) t.join();
  REQUIRE(failures == 0);
  REQUIRE(j.retained_batches() == 0);
}

}  // namespace tandem::test
