// Store::execute_schema: an application's schema statements in one transaction, including
// the migration of replicated tables to a newer declaration (docs/schema.md).
//
// How a newer schema is recognised: a `CREATE TABLE IF NOT EXISTS` of a replicated table that
// exists is that table's declaration now. SQLite would skip the statement; Tandem compares it
// with the table column by column (schema_diff.hpp) and appends the new columns with ALTER
// TABLE ADD COLUMN, or refuses the whole schema. An ALTER TABLE ... ADD COLUMN in the schema
// works too. Either way, once every statement ran, every replicated table is inspected again
// and compared with what the store held: the only change it may show is appended columns that
// are nullable or have a constant DEFAULT (a DROP or RENAME COLUMN, which SQLite reports to the
// authorizer as the same ALTER TABLE, is caught here), and it must still satisfy every rule of
// a replicated table. Any refusal rolls the transaction back: nothing changed, and the file
// still opens with its old schema.
//
// What a migration writes: the table's CREATE text (SQLite's ADD COLUMN touches no row), its
// value_columns in tandem_tables (the new column is appended to the clock order), the count
// of cells its existing clock records hold (tandem_meta 'base_cells_<id>', first migration
// only), and its key-allocation trigger, which lists the columns. No clock record is
// rewritten: a record written before the migration lacks the new column's cell, which reads
// as never written (store_format.hpp). The cost does not depend on the number of rows, except
// that SQLite checks every row when it adds a column to a STRICT table or one with CHECK
// constraints (it reads them; it writes none).
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "runtime/store/schema_diff.hpp"
#include "runtime/store/store_impl.hpp"

namespace tandem {
namespace {

// Runs the statements of `sql` one at a time under the schema authorizer; a CREATE TABLE IF
// NOT EXISTS of an existing replicated table migrates that table instead.
Status run_statements(Store::Impl& s, const std::string& sql) {
  struct ModeReset {
    Store::Impl& s;
    ~ModeReset() { s.mode = Store::Impl::Mode::internal; }
  } reset{s};
  const char* tail = sql.c_str();
  const char* const end = tail + sql.size();
  while (tail < end) {
    s.mode = Store::Impl::Mode::schema;
    s.denial.clear();
    s.created_table.clear();
    s.altered_table.clear();
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v2(s.db->raw(), tail, static_cast<int>(end - tail), &raw, &tail);
    if (rc != SQLITE_OK) return s.denial.empty() ? s.db->error(rc) : Status::PermissionDenied(s.denial);
    if (raw == nullptr) continue;  // blanks or a comment
    Statement statement(s.db.get(), raw);
    s.mode = Store::Impl::Mode::internal;
    // It prepared although the table exists, so it is IF NOT EXISTS: a no-op for SQLite,
    // the table's newer declaration for Tandem.
    if (const TableInfo* t = s.created_table.empty() ? nullptr : s.find_table(s.created_table)) {
      TANDEM_ASSIGN_OR_RETURN(ColumnPlan plan, plan_added_columns(*t, statement.sql()));
      TANDEM_RETURN_IF_ERROR(add_columns(*s.db, *t, plan));
      continue;
    }
    // The key-allocation trigger names every column: SQLite would refuse to drop or rename
    // one with an error about the trigger. Without it, the check after the statements says
    // what was wrong; execute_schema installs it again.
    if (const TableInfo* t = s.altered_table.empty() ? nullptr : s.find_table(s.altered_table))
      TANDEM_RETURN_IF_ERROR(s.db->exec("DROP TRIGGER IF EXISTS temp.tandem_key_" + std::to_string(t->id)));
    s.mode = Store::Impl::Mode::schema;
    Status ran = statement.run();
    if (!ran.ok()) return s.denial.empty() ? ran : Status::PermissionDenied(s.denial);
  }
  return Status::Ok();
}

}  // namespace

Status Store::execute_schema(const std::string& sql) {
  Impl& s = *impl_;
  Transaction txn(*s.db);
  TANDEM_RETURN_IF_ERROR(txn.begin_immediate());
  TANDEM_RETURN_IF_ERROR(run_statements(s, sql));

  // Every replicated table again: appended columns are the only change allowed.
  std::vector<std::pair<size_t, TableInfo>> evolved;  // (position, new definition)
  for (size_t i = 0; i < s.tables.size(); ++i) {
    const TableInfo& t = *s.tables[i];
    auto now = inspect_table(*s.db, t.name);
    if (!now.ok() && now.status().code() == StatusCode::not_found)
      return Status::Unsupported("schema change refused: replicated table " + t.name +
                                 " was renamed or dropped; a replicated table keeps its name (create a new table instead)");
    if (!now.ok()) return Status::Unsupported("schema change refused: " + now.status().message());
    TANDEM_ASSIGN_OR_RETURN(std::vector<size_t> added, appended_columns(t.name, t.columns, now->columns));
    if (added.empty()) continue;
    now->id = t.id;
    now->base_cells = t.base_cells;
    evolved.emplace_back(i, std::move(now).value());
  }
  for (auto& [position, info] : evolved) {
    TANDEM_RETURN_IF_ERROR(fill_default_values(info));
    nlohmann::json columns = nlohmann::json::array();
    for (int c : info.value_columns) columns.push_back(info.columns[static_cast<size_t>(c)].name);
    TANDEM_ASSIGN_OR_RETURN(auto st, s.db->prepare("UPDATE tandem_tables SET value_columns = ?1 WHERE id = ?2"));
    TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(columns.dump())));
    TANDEM_RETURN_IF_ERROR(st->bind_int64(2, info.id));
    TANDEM_RETURN_IF_ERROR(st->run());
    TANDEM_RETURN_IF_ERROR(save_base_cells(*s.db, info));
    // The trigger copies every column of a row inserted without a key (keys.hpp).
    TANDEM_RETURN_IF_ERROR(s.db->exec("DROP TRIGGER IF EXISTS temp.tandem_key_" + std::to_string(info.id)));
    TANDEM_RETURN_IF_ERROR(s.install_key_allocation(info));
  }
  for (const auto& t : s.tables) TANDEM_RETURN_IF_ERROR(s.install_key_allocation(*t));  // those an ALTER dropped
  TANDEM_RETURN_IF_ERROR(txn.commit());
  // In place: Capture holds pointers to these TableInfos.
  for (auto& [position, info] : evolved) {
    s.table_statements.erase(info.id);  // they list the old columns
    *s.tables[position] = std::move(info);
  }
  s.user_statements.clear();
  return Status::Ok();
}

}  // namespace tandem
