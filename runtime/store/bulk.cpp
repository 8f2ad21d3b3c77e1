// Bulk reads and writes of clock records and data rows: one statement per table and
// transaction, fed by a RowFeed, instead of one statement run per row. The feed drives each
// loop (CROSS JOIN keeps SQLite from scanning the table instead) and its rowid is the
// position of the key in the caller's list.
#include <sqlite3.h>

#include "runtime/store/store_impl.hpp"

namespace tandem {
namespace {

std::string key_match(const TableInfo& t, const std::string& table_alias, int first_feed_column) {
  std::string sql;
  for (size_t i = 0; i < t.pk_columns.size(); ++i) {
    if (i) sql += " AND ";
    sql += table_alias + "." + quote_identifier(t.columns[static_cast<size_t>(t.pk_columns[i])].name) + " = f.c" +
           std::to_string(first_feed_column + static_cast<int>(i));
  }
  return sql;
}

Result<StatementLease> lend_statement(Database& db, std::unique_ptr<Statement>& slot, const std::string& sql) {
  if (!slot) {
    TANDEM_ASSIGN_OR_RETURN(slot, db.prepare(sql));
  }
  return StatementLease(slot.get());
}

// Serves `cells` through `feed` for the lifetime of the object.
class Serving {
 public:
  Serving(RowFeed* feed, const std::vector<Value>* cells) : feed_(feed) { feed_->set(cells); }
  ~Serving() { feed_->set(nullptr); }
  Serving(const Serving&) = delete;
  Serving& operator=(const Serving&) = delete;

 private:
  RowFeed* feed_;
};

}  // namespace

Result<RowFeed*> Store::Impl::feed(int columns) {
  if (feeds.size() <= static_cast<size_t>(columns)) feeds.resize(static_cast<size_t>(columns) + 1);
  auto& slot = feeds[static_cast<size_t>(columns)];
  if (!slot) {
    TANDEM_ASSIGN_OR_RETURN(slot, RowFeed::attach(*db, "tandem_feed" + std::to_string(columns), columns));
  }
  return slot.get();
}

Status Store::Impl::load_clocks(const TableInfo& t, const std::vector<Value>& keys, std::vector<RowClock>* out) {
  out->assign(keys.size(), RowClock{});
  for (auto& c : *out) c.cells.assign(t.value_columns.size(), CellClock{});
  if (keys.empty()) return Status::Ok();
  TANDEM_ASSIGN_OR_RETURN(RowFeed * f, feed(1));
  Serving serving(f, &keys);
  TANDEM_ASSIGN_OR_RETURN(auto st, lend_statement(*db, table_statements[t.id].load_clocks,
                                                  "SELECT f.rowid, c.cl, c.clock FROM temp.tandem_feed1 AS f CROSS JOIN " +
                                                      t.clock_table() + " AS c ON c.pk = f.c0"));
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
    if (!row) break;
    auto index = static_cast<size_t>(st->column_int64(0));
    if (index >= keys.size()) return Status::Internal("bulk clock read returned an unknown row");
    RowClock& clock = (*out)[index];
    clock.exists = true;
    clock.cl = st->column_int64(1);
    auto* p = static_cast<const char*>(sqlite3_column_blob(st->raw(), 2));
    auto n = static_cast<size_t>(sqlite3_column_bytes(st->raw(), 2));
    TANDEM_RETURN_IF_ERROR(decode_clock(std::string_view(p ? p : "", n), t.value_columns.size(), t.base_cells, &clock)
                               .with_context("clock of a row of " + t.name));
  }
  return Status::Ok();
}

Status Store::Impl::save_clocks(const TableInfo& t, const std::vector<std::pair<Value, const RowClock*>>& records) {
  if (records.empty()) return Status::Ok();
  std::vector<Value> cells;
  cells.reserve(records.size() * 3);
  for (const auto& [key, clock] : records) {
    cells.push_back(key);
    cells.push_back(Value::Integer(clock->cl));
    encode_clock(*clock, t.base_cells, &clock_buffer);
    cells.push_back(Value::Blob(clock_buffer));
  }
  TANDEM_ASSIGN_OR_RETURN(RowFeed * f, feed(3));
  Serving serving(f, &cells);
  TANDEM_ASSIGN_OR_RETURN(auto st, lend_statement(*db, table_statements[t.id].save_clocks,
                                                  "INSERT OR REPLACE INTO " + t.clock_table() +
                                                      "(pk, cl, clock) SELECT c0, c1, c2 FROM temp.tandem_feed3"));
  return st->run();
}

Result<int64_t> Store::Impl::bump_clocks(const TableInfo& t, int64_t version, const std::vector<Value>& cells) {
  // One statement run per key: UPDATE ... FROM a feed materializes the join and seeks every
  // record twice, which measured slower than this.
  const std::string clock = t.clock_table();
  TANDEM_ASSIGN_OR_RETURN(auto st, lend_statement(*db, table_statements[t.id].bump_clocks,
                                                  "UPDATE " + clock + " SET clock = tandem_bump(clock, cl, ?2, " +
                                                      std::to_string(t.value_columns.size()) + ", ?3, " +
                                                      std::to_string(t.base_cells) + ") WHERE pk = ?1 AND cl % 2 = 1"));
  int64_t matched = 0;
  for (size_t i = 0; i + 1 < cells.size(); i += 2) {
    TANDEM_RETURN_IF_ERROR(st->bind(1, cells[i]));
    TANDEM_RETURN_IF_ERROR(st->bind(2, cells[i + 1]));
    TANDEM_RETURN_IF_ERROR(st->bind_int64(3, version));
    TANDEM_RETURN_IF_ERROR(st->run());
    matched += db->changes();
    sqlite3_reset(st->raw());
  }
  return matched;
}

Status Store::Impl::load_rows(const TableInfo& t, const std::vector<const Row*>& pks, std::vector<std::optional<Row>>* out) {
  out->assign(pks.size(), std::nullopt);
  if (pks.empty()) return Status::Ok();
  const int width = static_cast<int>(t.pk_columns.size());
  std::vector<Value> cells;
  cells.reserve(pks.size() * static_cast<size_t>(width));
  for (const Row* pk : pks) cells.insert(cells.end(), pk->begin(), pk->end());
  TANDEM_ASSIGN_OR_RETURN(RowFeed * f, feed(width));
  Serving serving(f, &cells);
  TANDEM_ASSIGN_OR_RETURN(auto st, lend_statement(*db, table_statements[t.id].load_rows,
                                                  "SELECT f.rowid, t.* FROM " + f->name() + " AS f CROSS JOIN " + t.quoted_name() +
                                                      " AS t ON " + key_match(t, "t", 0)));
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(bool found, st->step());
    if (!found) break;
    auto index = static_cast<size_t>(st->column_int64(0));
    if (index >= pks.size()) return Status::Internal("bulk row read returned an unknown row");
    Row row;
    row.reserve(t.columns.size());
    for (size_t c = 0; c < t.columns.size(); ++c) row.push_back(st->column(static_cast<int>(c + 1)));
    (*out)[index] = std::move(row);
  }
  return Status::Ok();
}

Status Store::Impl::delete_rows(const TableInfo& t, const std::vector<const Row*>& pks) {
  if (pks.empty()) return Status::Ok();
  const int width = static_cast<int>(t.pk_columns.size());
  std::vector<Value> cells;
  for (const Row* pk : pks) cells.insert(cells.end(), pk->begin(), pk->end());
  TANDEM_ASSIGN_OR_RETURN(RowFeed * f, feed(width));
  Serving serving(f, &cells);
  std::string key_list, feed_list;
  for (int i = 0; i < width; ++i) {
    key_list += (i ? ", " : "") + quote_identifier(t.columns[static_cast<size_t>(t.pk_columns[static_cast<size_t>(i)])].name);
    feed_list += (i ? ", c" : "c") + std::to_string(i);
  }
  TANDEM_ASSIGN_OR_RETURN(auto st, lend_statement(*db, table_statements[t.id].delete_rows,
                                                  "DELETE FROM " + t.quoted_name() + " WHERE (" + key_list + ") IN (SELECT " +
                                                      feed_list + " FROM " + f->name() + ")"));
  return st->run();
}

Status Store::Impl::update_rows(const TableInfo& t, const std::vector<const Row*>& rows) {
  if (rows.empty() || t.value_columns.empty()) return Status::Ok();
  const int width = static_cast<int>(t.columns.size());
  std::vector<Value> cells;
  cells.reserve(rows.size() * t.columns.size());
  for (const Row* row : rows) cells.insert(cells.end(), row->begin(), row->end());
  TANDEM_ASSIGN_OR_RETURN(RowFeed * f, feed(width));
  Serving serving(f, &cells);
  std::string sets;
  for (size_t i = 0; i < t.value_columns.size(); ++i) {
    int c = t.value_columns[i];
    sets += (i ? ", " : "") + quote_identifier(t.columns[static_cast<size_t>(c)].name) + " = f.c" + std::to_string(c);
  }
  std::string match;
  for (size_t i = 0; i < t.pk_columns.size(); ++i) {
    int c = t.pk_columns[i];
    match += (i ? " AND " : "") + t.quoted_name() + "." + quote_identifier(t.columns[static_cast<size_t>(c)].name) + " = f.c" +
             std::to_string(c);
  }
  TANDEM_ASSIGN_OR_RETURN(auto st, lend_statement(*db, table_statements[t.id].update_rows,
                                                  "UPDATE " + t.quoted_name() + " SET " + sets + " FROM " + f->name() +
                                                      " AS f WHERE " + match));
  return st->run();
}

Status Store::Impl::insert_rows(const TableInfo& t, const std::vector<bool>& columns, const std::vector<const Row*>& rows) {
  if (rows.empty()) return Status::Ok();
  std::string mask, names, picks;
  int width = 0;
  for (size_t c = 0; c < columns.size(); ++c) {
    mask += columns[c] ? '1' : '0';
    if (!columns[c]) continue;
    names += (width ? ", " : "") + quote_identifier(t.columns[c].name);
    picks += (width ? ", c" : "c") + std::to_string(width);
    ++width;
  }
  std::vector<Value> cells;
  cells.reserve(rows.size() * static_cast<size_t>(width));
  for (const Row* row : rows)
    for (size_t c = 0; c < columns.size(); ++c)
      if (columns[c]) cells.push_back((*row)[c]);
  TANDEM_ASSIGN_OR_RETURN(RowFeed * f, feed(width));
  Serving serving(f, &cells);
  TANDEM_ASSIGN_OR_RETURN(auto st, lend_statement(*db, table_statements[t.id].insert_rows[mask],
                                                  "INSERT INTO " + t.quoted_name() + "(" + names + ") SELECT " + picks + " FROM " +
                                                      f->name()));
  return st->run();
}

}  // namespace tandem
