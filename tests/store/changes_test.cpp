// Change extraction: order, exclusion, limits at version boundaries, and versions larger
// than a batch split at row boundaries and resumed.
#include <set>

#include "tests/store/store_test_util.hpp"

using namespace tandem;
using namespace tandem::test;

namespace {
const char* kSchema = "CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, a, b); CREATE TABLE u(k TEXT PRIMARY KEY NOT NULL, v)";
}

TEST_CASE("changes come in (db_version, seq) order, and leave out the excluded site", "[store][changes]") {
  auto a = memory_store(1, kSchema, {"t", "u"});
  auto b = memory_store(2, kSchema, {"t", "u"});
  REQUIRE(a->write({{"INSERT INTO u VALUES ('x', 1)", {}}, {"INSERT INTO t VALUES (1, 'a', 'b')", {}}, {"UPDATE u SET v = 2", {}},
                    {"INSERT INTO t VALUES (2, 'c', 'd')", {}}})
              .ok());
  exec(*b, "INSERT INTO t VALUES (3, 'from b', NULL)");
  sync(*b, *a);
  exec(*a, "UPDATE t SET a = 'z' WHERE id = 1");
  auto all = a->changes_since(0);
  REQUIRE(all.ok());
  int64_t last_version = 0, last_seq = -1;
  for (const auto& c : all->changes()) {
    REQUIRE(c.db_version() >= last_version);
    if (c.db_version() == last_version && c.site_id() == site_bytes(site_number(1))) CHECK(c.seq() > last_seq);
    if (c.db_version() != last_version) last_seq = -1;
    last_version = c.db_version();
    if (c.site_id() == site_bytes(site_number(1))) last_seq = c.seq();
  }
  auto without_b = a->changes_since(0, site_number(2));
  REQUIRE(without_b.ok());
  CHECK(without_b->changes_size() == all->changes_size() - 2);
  for (const auto& c : without_b->changes()) CHECK(c.site_id() != site_bytes(site_number(2)));
}

TEST_CASE("a limit cuts at a version boundary and the cursor resumes there", "[store][changes]") {
  auto a = memory_store(1, kSchema, {"t", "u"});
  for (int i = 0; i < 10; ++i) exec(*a, "INSERT INTO t VALUES (?, 'a', 'b')", {Value::Integer(i)});
  auto first = a->changes_since(0, std::nullopt, 5);
  REQUIRE(first.ok());
  CHECK_FALSE(first->complete());
  CHECK(first->changes_size() == 6);  // three versions of two changes
  CHECK(first->to_db_version() == 3);
  auto rest = a->changes_since(first->to_db_version(), std::nullopt, 0);
  REQUIRE(rest.ok());
  CHECK(rest->complete());
  CHECK(rest->changes_size() == 14);
  CHECK(rest->to_db_version() == 10);
}

TEST_CASE("a version larger than the limit is split at row boundaries and resumed", "[store][changes]") {
  auto a = memory_store(1, kSchema, {"t", "u"});
  exec(*a, "INSERT INTO t VALUES (-1, 'before', NULL)");
  std::vector<SqlStatement> big;
  for (int i = 0; i < 1000; ++i) big.push_back({"INSERT INTO t VALUES (?, 'row', ?)", {Value::Integer(i), Value::Integer(i)}});
  big.push_back({"INSERT INTO u VALUES ('other table', 1)", {}});
  REQUIRE(a->write(big).ok());
  exec(*a, "DELETE FROM t WHERE id = 5");
  auto whole = a->changes_since(0);
  REQUIRE(whole.ok());

  auto b = memory_store(2, kSchema, {"t", "u"});
  Store::ChangesRequest req;
  req.limit = 150;
  req.split_versions = true;
  std::vector<change::Change> pieces;
  int batches = 0;
  for (;;) {
    auto batch = a->changes(req);
    INFO(batch.status().to_string());
    REQUIRE(batch.ok());
    REQUIRE(++batches < 100);
    CHECK(static_cast<size_t>(batch->changes_size()) <= req.limit + 2);  // cut at a row boundary
    for (const auto& c : batch->changes()) pieces.push_back(c);
    REQUIRE(b->merge(*batch).ok());
    CHECK(b->peer(a->site_id())->received == batch->to_db_version());
    if (batch->complete()) break;
    if (!batch->resume_after().empty()) CHECK(batch->to_db_version() == 1);  // inside version 2
    req.since = batch->to_db_version();
    req.resume_after = batch->resume_after();
  }
  CHECK(batches > 10);
  REQUIRE(pieces.size() == static_cast<size_t>(whole->changes_size()));
  for (size_t i = 0; i < pieces.size(); ++i) CHECK(pieces[i].SerializeAsString() == whole->changes(static_cast<int>(i)).SerializeAsString());
  CHECK(same_rows(dump(*a, "t"), dump(*b, "t")));
  CHECK(same_rows(dump(*a, "u"), dump(*b, "u")));

  Store::ChangesRequest bad;
  bad.since = 0;
  bad.resume_after = "junk";
  CHECK(a->changes(bad).status().code() == StatusCode::invalid_argument);
}

TEST_CASE("only_from keeps the changes of one site, in the extraction, counted by the limit", "[store][changes]") {
  auto a = memory_store(1, kSchema, {"t", "u"});
  auto b = memory_store(2, kSchema, {"t", "u"});
  exec(*a, "INSERT INTO t VALUES (1, 'a1', NULL)");
  exec(*b, "INSERT INTO t VALUES (2, 'b1', NULL)");
  exec(*b, "INSERT INTO t VALUES (3, 'b2', NULL)");
  sync(*b, *a);
  exec(*a, "INSERT INTO t VALUES (4, 'a2', NULL)");
  auto all = a->changes_since(0);
  REQUIRE(all.ok());

  Store::ChangesRequest mine;
  mine.only_from = site_number(1);
  auto own = a->changes(mine);
  REQUIRE(own.ok());
  int own_in_all = 0;
  for (const auto& c : all->changes()) own_in_all += c.site_id() == site_bytes(site_number(1));
  CHECK(own->changes_size() == own_in_all);
  for (const auto& c : own->changes()) CHECK(c.site_id() == site_bytes(site_number(1)));
  CHECK(own->to_db_version() == all->to_db_version());
  CHECK(own->sender_site_id() == all->sender_site_id());

  // The limit counts only the kept changes: a limit of the first row's changes ends the
  // batch after a's first version, though b's rows (not kept) follow it in the log.
  int first_row = 0;
  for (const auto& c : own->changes()) first_row += c.db_version() == 1;
  REQUIRE(first_row > 0);
  mine.limit = static_cast<size_t>(first_row);
  auto first = a->changes(mine);
  REQUIRE(first.ok());
  CHECK_FALSE(first->complete());
  CHECK(first->to_db_version() == 1);
  REQUIRE(first->changes_size() == first_row);
  mine.since = first->to_db_version();
  auto rest = a->changes(mine);
  REQUIRE(rest.ok());
  CHECK(rest->complete());
  CHECK(first->changes_size() + rest->changes_size() == own->changes_size());
  for (const auto& c : rest->changes()) CHECK(c.site_id() == site_bytes(site_number(1)));
  // One more than the first row: b's rows after it do not count, so the batch runs on to
  // a's next row and the end (counting every site would stop after b's first row).
  mine.since = 0;
  mine.limit = static_cast<size_t>(first_row) + 1;
  auto on = a->changes(mine);
  REQUIRE(on.ok());
  CHECK(on->complete());
  CHECK(on->changes_size() == own->changes_size());

  Store::ChangesRequest theirs;
  theirs.only_from = site_number(2);
  auto from_b = a->changes(theirs);
  REQUIRE(from_b.ok());
  CHECK(from_b->changes_size() == all->changes_size() - own->changes_size());
  Store::ChangesRequest stranger;
  stranger.only_from = site_number(9);  // never seen: nothing
  auto none = a->changes(stranger);
  REQUIRE(none.ok());
  CHECK(none->changes_size() == 0);
}

TEST_CASE("peers lists every tracked peer with its cursors, the one received most from first", "[store][changes]") {
  auto a = memory_store(1, kSchema, {"t", "u"});
  auto b = memory_store(2, kSchema, {"t", "u"});
  auto c = memory_store(3, kSchema, {"t", "u"});
  auto none = a->peers();
  REQUIRE(none.ok());
  CHECK(none->empty());
  exec(*b, "INSERT INTO t VALUES (1, 'b', NULL)");
  exec(*c, "INSERT INTO t VALUES (2, 'c', NULL)");
  exec(*c, "INSERT INTO t VALUES (3, 'c', NULL)");
  sync(*b, *a);
  sync(*c, *a);
  REQUIRE(a->record_peer_ack(site_number(2), 5).ok());
  REQUIRE(a->record_peer_ack(site_number(4), 1).ok());  // acked only, never received from
  auto peers = a->peers();
  REQUIRE(peers.ok());
  REQUIRE(peers->size() == 3);
  CHECK((*peers)[0].site == site_number(3));
  CHECK((*peers)[0].cursor.received == c->db_version());
  CHECK((*peers)[1].site == site_number(2));
  CHECK((*peers)[1].cursor.received == b->db_version());
  CHECK((*peers)[1].cursor.acked == 5);
  CHECK((*peers)[2].site == site_number(4));
  CHECK((*peers)[2].cursor.received == 0);
  for (const auto& p : *peers) {
    auto one = a->peer(p.site);
    REQUIRE(one.ok());
    CHECK(one->received == p.cursor.received);
    CHECK(one->acked == p.cursor.acked);
  }
}

TEST_CASE("only_columns keeps some tables whole and some columns' cells, counted by the limit and resumable", "[store][changes][backfill]") {
  auto a = memory_store(1, kSchema, {"t", "u"});
  for (int i = 0; i < 6; ++i) exec(*a, "INSERT INTO t VALUES (?, 'a', 'b')", {Value::Integer(i)});
  exec(*a, "INSERT INTO u VALUES ('x', 1)");
  exec(*a, "UPDATE t SET b = 'b2' WHERE id = 2");
  exec(*a, "DELETE FROM u WHERE k = 'x'");
  exec(*a, "INSERT INTO u VALUES ('y', 2)");
  auto all = a->changes_since(0);
  REQUIRE(all.ok());
  // What the filter must keep: t's cells of b (no sentinel, no a), every change of u.
  std::multiset<std::string> want;
  for (const auto& c : all->changes())
    if ((c.table() == "t" && c.cid() == "b") || c.table() == "u")
      want.insert(c.table() + "." + c.cid() + "@" + std::to_string(c.db_version()));
  CHECK(want.size() >= 6 + 2);  // b of 6 rows; u: at least y's sentinel and v
  Store::ChangesRequest request;
  request.only_columns = {{"t", {"b"}}, {"u", {}}};  // lower-case names, matched case-insensitively
  auto read = a->changes(request);
  REQUIRE(read.ok());
  std::multiset<std::string> got;
  for (const auto& c : read->changes()) got.insert(c.table() + "." + c.cid() + "@" + std::to_string(c.db_version()));
  CHECK(got == want);
  CHECK(read->complete());
  CHECK(read->to_db_version() == a->db_version());
  // Cut by a limit (which counts only the kept changes), then resumed: the same changes.
  request.limit = 4;
  request.split_versions = true;
  std::multiset<std::string> parts;
  int reads = 0;
  for (;;) {
    auto part = a->changes(request);
    REQUIRE(part.ok());
    ++reads;
    CHECK(part->changes_size() <= 4);
    for (const auto& c : part->changes()) parts.insert(c.table() + "." + c.cid() + "@" + std::to_string(c.db_version()));
    if (part->complete()) break;
    request.since = part->to_db_version();
    request.resume_after = part->resume_after();
  }
  CHECK(reads >= 2);
  CHECK(parts == want);
}
