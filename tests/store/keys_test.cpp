// Rows inserted without a key get device-unique keys (runtime/store/keys.hpp): two devices that
// insert while apart keep two rows after sync.
#include "runtime/store/keys.hpp"

#include "tests/store/store_test_util.hpp"

namespace tandem::test {
namespace {

const char* kTodo = "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT, done INTEGER DEFAULT 0);";

int64_t block_of(uint8_t site) { return key_block(site_number(site)); }

}  // namespace

TEST_CASE("two devices inserting without keys while apart keep both rows after sync", "[store][keys]") {
  auto a = memory_store(1, kTodo, {"todo"});
  auto b = memory_store(2, kTodo, {"todo"});
  exec(*a, "INSERT INTO todo(title) VALUES (?)", {Value::Text("buy milk")});
  exec(*b, "INSERT INTO todo(title) VALUES (?)", {Value::Text("walk the dog")});
  exec(*b, "INSERT INTO todo(id, title) VALUES (NULL, ?)", {Value::Text("call mum")});
  sync(*a, *b);
  sync(*b, *a);
  auto rows = dump(*a, "todo");
  INFO(render(rows));
  REQUIRE(rows.size() == 3);
  CHECK(same_rows(rows, dump(*b, "todo")));
  // Each device's keys come from its own block, in insertion order.
  auto b_rows = b->query("SELECT id FROM todo WHERE title IN ('walk the dog', 'call mum') ORDER BY id");
  REQUIRE(b_rows.ok());
  REQUIRE(b_rows->rows.size() == 2);
  CHECK(b_rows->rows[0][0].integer() == block_first_key(block_of(2)));
  CHECK(b_rows->rows[1][0].integer() == block_first_key(block_of(2)) + 1);
  auto a_row = a->query("SELECT id FROM todo WHERE title = 'buy milk'");
  REQUIRE(a_row.ok());
  CHECK(a_row->rows.at(0)[0].integer() == block_first_key(block_of(1)));
}

TEST_CASE("allocated keys are reported, never reused after a delete, and leave explicit keys alone", "[store][keys]") {
  auto a = memory_store(1, kTodo, {"todo"});
  const int64_t first = block_first_key(block_of(1));
  auto r = exec(*a, "INSERT INTO todo(title) VALUES ('x'), ('y')");
  CHECK(r.rows_changed == 2);
  CHECK(r.last_key == first + 1);
  exec(*a, "DELETE FROM todo WHERE id = ?", {Value::Integer(first + 1)});
  r = exec(*a, "INSERT INTO todo(title) VALUES ('z')");
  CHECK(r.last_key == first + 2);  // the deleted key's clock record keeps it taken
  r = exec(*a, "INSERT INTO todo(id, title) VALUES (7, 'explicit')");
  CHECK(r.last_key == 0);
  CHECK(r.rows_changed == 1);
  auto rows = dump(*a, "todo");
  REQUIRE(rows.size() == 3);
  CHECK(rows[0][0].integer() == 7);
  CHECK(rows[1][0].integer() == first);
  CHECK(rows[2][0].integer() == first + 2);
  // Defaults of omitted columns are kept by the re-insert.
  CHECK(rows[2][2].integer() == 0);
  REQUIRE(a->verify().ok());
}

TEST_CASE("offline devices each write many rows, every row survives any sync order", "[store][keys]") {
  std::vector<std::unique_ptr<Store>> devices;
  for (uint8_t s = 1; s <= 4; ++s) devices.push_back(memory_store(s, kTodo, {"todo"}));
  for (int round = 0; round < 3; ++round) {
    for (size_t d = 0; d < devices.size(); ++d)
      for (int i = 0; i < 5; ++i)
        exec(*devices[d], "INSERT INTO todo(title) VALUES (?)",
             {Value::Text("d" + std::to_string(d) + " r" + std::to_string(round) + " i" + std::to_string(i))});
    // A partial exchange between rounds: SQLite's max(rowid) + 1 would now collide.
    sync(*devices[round % 4], *devices[(round + 1) % 4]);
  }
  for (auto& from : devices)
    for (auto& to : devices)
      if (from != to) sync(*from, *to);
  for (auto& from : devices)
    for (auto& to : devices)
      if (from != to) sync(*from, *to);
  for (auto& d : devices) {
    auto rows = dump(*d, "todo");
    CHECK(rows.size() == 60);
    CHECK(same_rows(rows, dump(*devices[0], "todo")));
  }
}

TEST_CASE("merged rows keep their keys, also a row whose key is -1", "[store][keys]") {
  auto a = memory_store(1, kTodo, {"todo"});
  auto b = memory_store(2, kTodo, {"todo"});
  auto batch = make_batch(2, {make_change("todo", {Value::Integer(-1)}, "title", Value::Text("minus one"), 1, 1, 2)});
  auto merged = a->merge(batch);
  INFO(merged.status().to_string());
  REQUIRE(merged.ok());
  auto rows = dump(*a, "todo");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0][0].integer() == -1);
}

TEST_CASE("the allocation function cannot be called from the file's own views or triggers", "[store][keys]") {
  auto a = memory_store(1, kTodo, {"todo"});
  REQUIRE(a->execute_schema("CREATE VIEW v AS SELECT tandem_next_key(1) AS k;").ok());
  auto q = a->query("SELECT k FROM v");
  CHECK_FALSE(q.ok());
  CHECK_FALSE(a->query("SELECT tandem_next_key(99)").ok());  // not an INTEGER PRIMARY KEY table
}

}  // namespace tandem::test
