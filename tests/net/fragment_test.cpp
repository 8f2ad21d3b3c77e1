// Large values without a network: batches bounded by bytes (the store's extraction, the
// channel's forwards and push window), Fragments (cutting and reassembly, every refusal),
// and the store's write-size limit. The real processes are in big_value_test.cpp.
#include <algorithm>
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <set>

#include "runtime/sync/channel_core.hpp"
#include "runtime/sync/frames.hpp"
#include "tests/net/net_test_util.hpp"

using namespace tandem;
using tandem::test::TempDir;
using namespace tandem::sync_channel;

namespace {

const char* kSchema = "CREATE TABLE doc(id INTEGER PRIMARY KEY NOT NULL, body BLOB);";
constexpr size_t kFrameLimit = 16u << 20;  // the transport's default

SiteId site(uint8_t n) {
  SiteId s{};
  s[0] = 0xB1;
  s[15] = n;
  return s;
}

std::unique_ptr<Store> client_store(uint8_t n) { return test::client_store(site(n), kSchema, "doc"); }

void write(Store& s, const std::string& sql) {
  auto r = s.write({SqlStatement{sql, {}}});
  INFO(r.status().to_string());
  REQUIRE(r.ok());
}

// "id:length:first bytes:last bytes" per row: enough to tell values apart and truncations.
std::string digest(Store& s) {
  auto r = s.query("SELECT id, length(body), hex(substr(body, 1, 16)), hex(substr(body, -16)) FROM doc ORDER BY id");
  REQUIRE(r.ok());
  std::string out;
  for (const auto& row : r->rows) {
    for (const auto& v : row) out += v.to_sql_literal() + ":";
    out += "\n";
  }
  return out;
}

sync::Hello hello(Store& s) {
  sync::Hello h;
  h.set_protocol_version(1);
  h.set_site_id(site_bytes(s.site_id()));
  h.add_schema(kSchema);
  return h;
}

std::vector<std::string> frames_of(sync::Envelope e) {
  std::vector<std::string> frames;
  sync_frames::send_frames(std::move(e), [&](std::string f) { frames.push_back(std::move(f)); });
  return frames;
}

// What a receiver makes of the frames: the messages it would act on, in order.
std::vector<sync::Envelope> receive(const std::vector<std::string>& frames) {
  sync_frames::Reassembler r;
  std::vector<sync::Envelope> got;
  for (const auto& f : frames) {
    auto d = sync_frames::decode(f);
    REQUIRE(d.ok);
    if (!d.envelope.has_fragment()) {
      got.push_back(d.envelope);
      continue;
    }
    std::optional<sync::Envelope> whole;
    sync::Error error;
    INFO(error.message());
    REQUIRE(r.add(std::move(*d.envelope.mutable_fragment()), &whole, &error));
    if (whole) got.push_back(std::move(*whole));
  }
  CHECK_FALSE(r.active());
  return got;
}

sync::Envelope forward_with_value(size_t bytes) {
  sync::Envelope e;
  auto* c = e.mutable_forward()->mutable_batch()->add_changes();
  e.mutable_forward()->set_seq(1);
  c->set_table("doc");
  c->add_pk()->set_integer(1);
  c->set_cid("body");
  std::string v(bytes, '\0');
  for (size_t i = 0; i < bytes; ++i) v[i] = static_cast<char>((i * 2654435761u) >> 13);
  c->mutable_val()->set_blob(std::move(v));
  return e;
}

sync::Fragment fragment(uint64_t total, uint64_t offset, size_t n) {
  sync::Fragment f;
  f.set_total_bytes(total);
  f.set_offset(offset);
  f.set_data(std::string(n, 'x'));
  return f;
}


}  // namespace

TEST_CASE("fragments: a message larger than a fragment is cut into small frames and reassembled exactly", "[fragment]") {
  sync::Envelope e = forward_with_value(9'500'000);
  const std::string whole = sync_frames::encode(e);
  auto frames = frames_of(e);
  REQUIRE(frames.size() == (whole.size() + sync_frames::kFragmentBytes - 1) / sync_frames::kFragmentBytes);
  for (const auto& f : frames) CHECK(f.size() <= sync_frames::kFragmentBytes + 64);
  auto got = receive(frames);
  REQUIRE(got.size() == 1);
  CHECK(sync_frames::encode(got[0]) == whole);

  // A small message stays one plain frame.
  auto small = frames_of(forward_with_value(1000));
  REQUIRE(small.size() == 1);
  CHECK(sync_frames::decode(small[0]).envelope.has_forward());
}

TEST_CASE("fragments: a receiver refuses fragments that do not continue the message, and delivers nothing partial",
          "[fragment]") {
  sync_frames::Reassembler r(100);
  std::optional<sync::Envelope> whole;
  sync::Error error;
  CHECK_FALSE(r.add(fragment(50, 10, 10), &whole, &error));  // starts no message
  CHECK(error.code() == sync::Error::PROTOCOL);
  CHECK(error.fatal());
  CHECK_FALSE(r.add(fragment(101, 0, 10), &whole, &error));  // over the bound
  CHECK_THAT(error.message(), Catch::Contains("larger than the limit"));
  CHECK_FALSE(r.add(fragment(50, 0, 0), &whole, &error));  // empty

  REQUIRE(r.add(fragment(50, 0, 20), &whole, &error));
  CHECK_FALSE(whole);
  CHECK(r.active());
  CHECK_FALSE(r.add(fragment(50, 30, 10), &whole, &error));  // a gap
  CHECK_FALSE(r.active());                                   // and the message is dropped

  REQUIRE(r.add(fragment(50, 0, 20), &whole, &error));
  CHECK_FALSE(r.add(fragment(60, 20, 10), &whole, &error));  // another total
  REQUIRE(r.add(fragment(50, 0, 20), &whole, &error));
  CHECK_FALSE(r.add(fragment(50, 20, 40), &whole, &error));  // past the end

  // A lost connection in the middle (reset): the next message starts afresh, and the part
  // received before is never delivered.
  sync::Envelope e = forward_with_value(3'000'000);
  auto frames = frames_of(e);
  REQUIRE(frames.size() == 3);
  sync_frames::Reassembler big;
  auto first = sync_frames::decode(frames[0]);
  REQUIRE(big.add(std::move(*first.envelope.mutable_fragment()), &whole, &error));
  CHECK_FALSE(whole);
  big.reset();
  auto second = sync_frames::decode(frames[1]);
  CHECK_FALSE(big.add(std::move(*second.envelope.mutable_fragment()), &whole, &error));
  CHECK_FALSE(whole);
  CHECK(receive(frames).size() == 1);
}

TEST_CASE("fragments: only a push or a forward may be fragmented", "[fragment]") {
  sync::Envelope hello;
  hello.mutable_hello()->set_token(std::string(3u << 20, 't'));
  auto frames = frames_of(hello);
  REQUIRE(frames.size() > 1);
  sync_frames::Reassembler r;
  std::optional<sync::Envelope> whole;
  sync::Error error;
  bool ok = true;
  for (const auto& f : frames) {
    auto d = sync_frames::decode(f);
    ok = r.add(std::move(*d.envelope.mutable_fragment()), &whole, &error);
  }
  CHECK_FALSE(ok);
  CHECK_FALSE(whole);
  CHECK_THAT(error.message(), Catch::Contains("only a Push or a Forward"));
}

TEST_CASE("store: a batch bounded by bytes is cut between rows and carries a large row alone", "[fragment][store]") {
  auto a = client_store(1);
  // One transaction: small rows around a 6 MB row.
  write(*a,
        "INSERT INTO doc(id, body) VALUES (1, randomblob(1000)), (2, randomblob(1000)), (3, randomblob(6000000)), "
        "(4, randomblob(1000))");
  Store::ChangesRequest req;
  req.split_versions = true;
  req.max_bytes = 1u << 20;
  std::vector<change::ChangeBatch> batches;
  for (int guard = 0; guard < 10; ++guard) {
    auto b = a->changes(req);
    REQUIRE(b.ok());
    const bool more = !b->resume_after().empty();
    req.since = b->to_db_version();
    req.resume_after = b->resume_after();
    batches.push_back(std::move(*b));
    if (!more) break;
  }
  REQUIRE(batches.size() == 3);
  auto ids = [](const change::ChangeBatch& b) {
    std::set<int64_t> out;
    for (const auto& c : b.changes()) out.insert(c.pk(0).integer());
    return out;
  };
  CHECK(ids(batches[0]) == std::set<int64_t>{1, 2});
  CHECK(ids(batches[1]) == std::set<int64_t>{3});
  CHECK(ids(batches[2]) == std::set<int64_t>{4});
  CHECK(batches[0].ByteSizeLong() <= req.max_bytes);
  CHECK(batches[2].ByteSizeLong() <= req.max_bytes);

  // Parts merged in order rebuild the same table.
  auto b = client_store(2);
  for (const auto& batch : batches) REQUIRE(b->merge(batch).ok());
  CHECK(digest(*b) == digest(*a));
}

TEST_CASE("channel: a catch-up of two 9 MB values comes in forwards that fit in frames, one big value in flight at a time",
          "[fragment][channel]") {
  TempDir dir;
  auto channel = ChannelCore::open(dir.path + "/users/alice.db");
  REQUIRE(channel.ok());
  auto& ch = **channel;
  auto a = client_store(1), c = client_store(3);
  REQUIRE(ch.join(1, "alice", hello(*a)).ok());
  write(*a, "INSERT INTO doc(id, body) VALUES (1, randomblob(9000000))");
  write(*a, "INSERT INTO doc(id, body) VALUES (2, randomblob(9000000))");
  for (uint64_t seq = 1; seq <= 2; ++seq) {
    auto batch = a->changes_since(static_cast<int64_t>(seq) - 1, std::nullopt, 0);
    REQUIRE(batch.ok());
    batch->set_to_db_version(static_cast<int64_t>(seq));
    sync::Push p;
    p.set_seq(seq);
    for (const auto& change : batch->changes())
      if (change.db_version() == static_cast<int64_t>(seq)) *p.mutable_batch()->add_changes() = change;
    p.mutable_batch()->set_sender_site_id(site_bytes(a->site_id()));
    p.mutable_batch()->set_from_db_version(static_cast<int64_t>(seq) - 1);
    p.mutable_batch()->set_to_db_version(static_cast<int64_t>(seq));
    REQUIRE(ch.push(1, std::move(p)).ok());
    for (const auto& o : ch.flush()) {
      INFO(sync_frames::describe(o.envelope));
      CHECK_FALSE(o.envelope.has_error());
    }
  }

  // The new device: the welcome, then only one forward (9 MB is over the byte window), and
  // each further one after the client's ack.
  auto joined = ch.join(3, "alice", hello(*c));
  REQUIRE(joined.ok());
  Outbox out = std::move(*joined);
  REQUIRE(out.size() == 2);
  CHECK(out[0].envelope.has_welcome());
  CHECK(out[0].envelope.welcome().max_message_bytes() == sync_frames::kMaxMessageBytes);
  int forwards = 0;
  for (int guard = 0; guard < 10 && !out.empty(); ++guard) {
    Outbox next;
    for (auto& o : out) {
      if (!o.envelope.has_forward()) continue;
      ++forwards;
      const uint64_t seq = o.envelope.forward().seq();
      CHECK(o.envelope.forward().batch().changes_size() <= 2);  // one row: the value and its sentinel
      for (const auto& f : frames_of(o.envelope)) CHECK(f.size() <= kFrameLimit);
      auto got = receive(frames_of(o.envelope));
      REQUIRE(got.size() == 1);
      REQUIRE(c->merge(got[0].forward().batch()).ok());
      sync::ClientAck ack;
      ack.set_seq(seq);
      ack.set_server_db_version(got[0].forward().batch().to_db_version());
      auto more = ch.client_ack(3, ack);
      REQUIRE(more.ok());
      CHECK(more->size() <= 1);
      for (auto& m : *more) next.push_back(std::move(m));
    }
    out = std::move(next);
  }
  CHECK(forwards == 2);
  CHECK(digest(*c) == digest(*a));
  CHECK(digest(*c).find("9000000") != std::string::npos);
}

TEST_CASE("channel: a push sent while unacknowledged pushes fill the byte window is refused", "[fragment][channel]") {
  TempDir dir;
  ChannelOptions options;
  options.push_window_bytes = 1u << 20;
  auto channel = ChannelCore::open(dir.path + "/users/alice.db", options);
  REQUIRE(channel.ok());
  auto& ch = **channel;
  auto a = client_store(1);
  auto joined = ch.join(1, "alice", hello(*a));
  REQUIRE(joined.ok());
  CHECK((*joined)[0].envelope.welcome().push_window_bytes() == options.push_window_bytes);
  write(*a, "INSERT INTO doc(id, body) VALUES (1, randomblob(2000000))");
  write(*a, "INSERT INTO doc(id, body) VALUES (2, randomblob(10))");
  auto push = [&](uint64_t seq, int64_t from, int64_t to) {
    sync::Push p;
    p.set_seq(seq);
    *p.mutable_batch() = test::own_changes_since(*a, from);
    // Only the versions (from, to]: a push carries no change outside its range.
    auto* changes = p.mutable_batch()->mutable_changes();
    changes->erase(std::remove_if(changes->begin(), changes->end(),
                                  [&](const change::Change& c) { return c.db_version() <= from || c.db_version() > to; }),
                   changes->end());
    p.mutable_batch()->set_from_db_version(from);
    p.mutable_batch()->set_to_db_version(to);
    return p;
  };
  // One push larger than the window is fine alone...
  REQUIRE(ch.push(1, push(1, 0, 1)).ok());
  // ... but nothing may follow it before its ack.
  auto refused = ch.push(1, push(2, 1, 2));
  CHECK_FALSE(refused.ok());
  CHECK_THAT(refused.message(), Catch::Contains("window"));
}

TEST_CASE("store: a value over 256 MiB is refused at write with an error naming the limit, and nothing is stored",
          "[fragment][store]") {
  auto a = client_store(1);
  write(*a, "INSERT INTO doc(id, body) VALUES (1, x'01')");
  const int64_t version = a->db_version();
  // Just over the limit (SQLite itself would take it), and far over it (SQLite refuses it).
  for (const std::string& size : {std::to_string(kMaxValueBytes + 1), std::to_string(300u << 20)}) {
    for (const std::string& sql : {"INSERT INTO doc(id, body) VALUES (2, zeroblob(" + size + "))",
                                  "UPDATE doc SET body = zeroblob(" + size + ") WHERE id = 1"}) {
      auto r = a->write({SqlStatement{sql, {}}});
      INFO(sql);
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().code() == StatusCode::resource_exhausted);
      CHECK_THAT(r.status().message(), Catch::Contains("256 MiB"));
      CHECK_THAT(r.status().message(), Catch::Contains("nothing of this write was stored"));
    }
  }
  CHECK(a->db_version() == version);
  CHECK(digest(*a) == "1:1:'01':'01':\n");
  write(*a, "INSERT INTO doc(id, body) VALUES (2, x'02')");
  CHECK(a->db_version() == version + 1);
}

TEST_CASE("fragments: a peer with a small frame limit gets fragments that fit it", "[fragment]") {
  const size_t limit = 200'000;
  const size_t piece = sync_frames::fragment_bytes_for(limit);
  CHECK(piece < limit);
  CHECK(sync_frames::fragment_bytes_for(0) == sync_frames::kFragmentBytes);
  CHECK(sync_frames::fragment_bytes_for(64u << 20) == sync_frames::kFragmentBytes);
  sync::Envelope e = forward_with_value(1'500'000);
  const std::string whole = sync_frames::encode(e);
  std::vector<std::string> frames;
  sync_frames::send_frames(std::move(e), [&](std::string f) { frames.push_back(std::move(f)); }, piece);
  CHECK(frames.size() == (whole.size() + piece - 1) / piece);
  for (const auto& f : frames) CHECK(f.size() <= limit);
  auto got = receive(frames);
  REQUIRE(got.size() == 1);
  CHECK(sync_frames::encode(got[0]) == whole);
}
