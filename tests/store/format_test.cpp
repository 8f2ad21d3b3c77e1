// The value orders and the record codecs of store_format.hpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "runtime/store/store_format.hpp"

using namespace tandem;

TEST_CASE("SQLite order: NULL < numbers < TEXT < BLOB, integers and reals compared exactly", "[store][value]") {
  CHECK(compare_sqlite(Value(), Value::Integer(-5)) < 0);
  CHECK(compare_sqlite(Value::Integer(1), Value::Real(1.0)) == 0);
  CHECK(compare_sqlite(Value::Integer(1), Value::Real(1.5)) < 0);
  CHECK(compare_sqlite(Value::Real(1e300), Value::Text("")) < 0);
  CHECK(compare_sqlite(Value::Text("b"), Value::Blob("a")) < 0);
  CHECK(compare_sqlite(Value::Text("ab"), Value::Text("b")) < 0);
  CHECK(compare_sqlite(Value::Text("a"), Value::Text("ab")) < 0);
  // 2^53 + 1 has no exact double: SQLite still orders it above 2^53 as a real.
  CHECK(compare_sqlite(Value::Integer(9007199254740993LL), Value::Real(9007199254740992.0)) > 0);
  CHECK(compare_sqlite(Value::Integer(INT64_MAX), Value::Real(9223372036854775808.0)) < 0);
  CHECK(compare_sqlite(Value::Integer(-3), Value::Real(-2.5)) < 0);
  CHECK(hash_sqlite(Value::Integer(3)) == hash_sqlite(Value::Real(3.0)));
}

TEST_CASE("merge order: INTEGER > REAL > TEXT > BLOB > NULL, total", "[store][value]") {
  CHECK(compare_crdt(Value::Integer(1), Value::Real(1.5)) > 0);
  CHECK(compare_crdt(Value::Real(-1e9), Value::Text("z")) > 0);
  CHECK(compare_crdt(Value::Text(""), Value::Blob("\xff")) > 0);
  CHECK(compare_crdt(Value::Blob(""), Value()) > 0);
  CHECK(compare_crdt(Value::Real(0.0), Value::Real(-0.0)) != 0);
  CHECK_FALSE(identical(Value::Integer(1), Value::Real(1.0)));
  CHECK_FALSE(identical(Value::Text("a"), Value::Blob("a")));
}

TEST_CASE("clock records round-trip, uniform and general", "[store][format]") {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 2000; ++round) {
    RowClock c;
    c.exists = true;
    c.cl = 1 + static_cast<int64_t>(rng() % 6);
    size_t cells = rng() % 5;
    bool uniform = rng() % 3 == 0;
    int64_t base = static_cast<int64_t>(rng() % 100000);
    for (size_t i = 0; i < cells; ++i) {
      CellClock cell;
      if (uniform) {
        cell = CellClock{1, base, 0, base + static_cast<int64_t>(i)};
      } else if (rng() % 4) {
        cell = CellClock{static_cast<int64_t>(rng() % 9), static_cast<int64_t>(rng() >> 20), static_cast<int64_t>(rng() % 7),
                         static_cast<int64_t>(rng() % 1000)};
      }
      c.cells.push_back(cell);
    }
    if (uniform) c.cl = 1;
    if (!uniform && rng() % 2) c.sentinel = CellClock{c.cl, 5, 1, 3};
    std::string bytes = encode_clock(c, cells);
    RowClock back;
    back.cl = c.cl;
    REQUIRE(decode_clock(bytes, cells, cells, &back).ok());
    REQUIRE(back.cells.size() == cells);
    for (size_t i = 0; i < cells; ++i) {
      CHECK(back.cells[i].col_version == c.cells[i].col_version);
      if (c.cells[i].present()) {
        CHECK(back.cells[i].db_version == c.cells[i].db_version);
        CHECK(back.cells[i].site == c.cells[i].site);
        CHECK(back.cells[i].seq == c.cells[i].seq);
      }
    }
    CHECK(back.sentinel.present() == c.sentinel.present());
  }
  RowClock fresh;
  fresh.cl = 1;
  fresh.cells = {CellClock{1, 9, 0, 4}, CellClock{1, 9, 0, 5}, CellClock{1, 9, 0, 6}};
  CHECK(encode_clock(fresh, 3).size() == 4);  // the compact form of a fresh insert
}

TEST_CASE("records written before columns were added lack their cells, later ones carry their count", "[store][format][schema]") {
  // A table registered with 2 value columns (base_cells 2) that then gained a third.
  RowClock old_uniform;
  old_uniform.cl = 1;
  old_uniform.cells = {CellClock{1, 9, 0, 4}, CellClock{1, 9, 0, 5}};
  const std::string uniform_bytes = encode_clock(old_uniform, 2);
  RowClock old_general;
  old_general.cl = 3;
  old_general.cells = {CellClock{2, 7, 1, 0}, CellClock{}};
  old_general.sentinel = CellClock{3, 8, 0, 1};
  const std::string general_bytes = encode_clock(old_general, 2);
  CHECK(static_cast<uint8_t>(uniform_bytes[0]) == 1);
  CHECK(static_cast<uint8_t>(general_bytes[0]) == 2);

  RowClock back;
  back.cl = 1;
  REQUIRE(decode_clock(uniform_bytes, 3, 2, &back).ok());
  REQUIRE(back.cells.size() == 3);
  CHECK(back.cells[0].col_version == 1);
  CHECK(back.cells[1].seq == 5);
  CHECK_FALSE(back.cells[2].present());  // the new column: never written here
  back.cl = 3;
  REQUIRE(decode_clock(general_bytes, 3, 2, &back).ok());
  CHECK(back.cells[0].col_version == 2);
  CHECK_FALSE(back.cells[1].present());
  CHECK_FALSE(back.cells[2].present());
  CHECK(back.sentinel.present());
  CHECK(back.sentinel.db_version == 8);

  // Records written with the third cell use the counted forms and round-trip exactly.
  RowClock fresh;
  fresh.cl = 1;
  fresh.cells = {CellClock{1, 12, 0, 0}, CellClock{1, 12, 0, 1}, CellClock{1, 12, 0, 2}};
  const std::string fresh_bytes = encode_clock(fresh, 2);
  CHECK(static_cast<uint8_t>(fresh_bytes[0]) == 3);
  CHECK(fresh_bytes.size() == 5);
  REQUIRE(decode_clock(fresh_bytes, 3, 2, &back).ok());
  CHECK(back.cells[2].col_version == 1);
  CHECK(back.cells[2].seq == 2);
  RowClock mixed = fresh;
  mixed.cells[2] = CellClock{4, 13, 2, 7};
  mixed.cl = 1;
  const std::string mixed_bytes = encode_clock(mixed, 2);
  CHECK(static_cast<uint8_t>(mixed_bytes[0]) == 4);
  back.cl = 1;
  REQUIRE(decode_clock(mixed_bytes, 4, 2, &back).ok());  // and a fourth column added since
  CHECK(back.cells[2].col_version == 4);
  CHECK(back.cells[2].site == 2);
  CHECK_FALSE(back.cells[3].present());
  // A record holding more cells than the table has columns is corrupt.
  CHECK_FALSE(decode_clock(mixed_bytes, 2, 2, &back).ok());
  CHECK_FALSE(decode_clock(fresh_bytes, 2, 2, &back).ok());
}

TEST_CASE("corrupt records are errors, not crashes", "[store][format][errors]") {
  RowClock c;
  CHECK_FALSE(decode_clock("", 2, 2, &c).ok());
  CHECK_FALSE(decode_clock("\x07", 2, 2, &c).ok());
  CHECK_FALSE(decode_clock(std::string("\x02\x05", 2), 2, 2, &c).ok());
  CHECK_FALSE(decode_clock(std::string("\x01\x01\x01\x01\x01", 5), 2, 2, &c).ok());
  Row pk;
  CHECK_FALSE(decode_key(std::string("\x03\x09", 2), &pk).ok());
  std::vector<Value> keys;
  CHECK_FALSE(read_keys(std::string("\x04\x09", 2), &keys).ok());
}

TEST_CASE("keys round-trip with their storage classes", "[store][format]") {
  Row pk{Value::Integer(-7), Value::Real(2.0), Value::Text("a\0b"), Value::Blob(""), Value::Integer(INT64_MIN)};
  Row back;
  REQUIRE(decode_key(encode_key(pk), &back).ok());
  CHECK(identical(pk, back));
  std::string list;
  std::vector<Value> keys{Value::Integer(0), Value::Integer(-1), Value::Integer(INT64_MAX), Value::Integer(INT64_MIN), Value::Blob("xy")};
  for (const auto& k : keys) append_key(list, k);
  std::vector<Value> read;
  REQUIRE(read_keys(list, &read).ok());
  REQUIRE(read.size() == keys.size());
  for (size_t i = 0; i < keys.size(); ++i) CHECK(identical(read[i], keys[i]));
}
