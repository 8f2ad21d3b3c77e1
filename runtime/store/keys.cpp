// Device-unique key allocation; the scheme and its reasons are in keys.hpp.
#include "runtime/store/keys.hpp"

#include <sqlite3.h>

#include "runtime/store/store_impl.hpp"

namespace tandem {

int64_t key_block(const SiteId& site) {
  uint64_t h = 1469598103934665603ull;
  for (uint8_t b : site) {
    h ^= b;
    h *= 1099511628211ull;
  }
  return 1 + static_cast<int64_t>(h % ((1ull << 31) - 1));
}

int64_t block_first_key(int64_t block) { return (block << kKeyBlockBits) + 1; }
int64_t block_last_key(int64_t block) { return (block << kKeyBlockBits) + ((int64_t{1} << kKeyBlockBits) - 1); }

Result<int64_t> Store::Impl::next_key(int64_t table_id) {
  const TableInfo* t = nullptr;
  for (const auto& info : tables)
    if (info->id == table_id) t = info.get();
  if (!t || !t->integer_pk) return Status::Internal("tandem_next_key: table " + std::to_string(table_id) + " has no integer key");
  const int64_t block = key_block(site);
  const int64_t first = block_first_key(block), last = block_last_key(block);
  const std::string& key = t->columns[static_cast<size_t>(t->pk_columns[0])].name;
  // The table holds keys of this transaction that have no clock record yet; the clock table
  // holds keys of deleted rows, which are never handed out again.
  int64_t greatest = first - 1;
  for (const std::string& sql :
       {"SELECT max(" + quote_identifier(key) + ") FROM main." + t->quoted_name() + " WHERE " + quote_identifier(key) +
            " BETWEEN ?1 AND ?2",
        "SELECT max(pk) FROM main." + t->clock_table() + " WHERE pk BETWEEN ?1 AND ?2"}) {
    TANDEM_ASSIGN_OR_RETURN(auto st, db->cached(sql));
    TANDEM_RETURN_IF_ERROR(st->bind_int64(1, first));
    TANDEM_RETURN_IF_ERROR(st->bind_int64(2, last));
    TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
    if (row && !st->column(0).is_null()) greatest = std::max(greatest, st->column_int64(0));
  }
  if (greatest >= last)
    return Status::ResourceExhausted("table " + t->name + ": this device has used all " +
                                     std::to_string((int64_t{1} << kKeyBlockBits) - 1) +
                                     " keys of its block; insert rows with explicit keys");
  last_key = greatest + 1;
  return last_key;
}

Status Store::Impl::install_key_allocation(const TableInfo& t) {
  if (!t.integer_pk || !options.allocate_keys) return Status::Ok();
  const std::string key = quote_identifier(t.columns[static_cast<size_t>(t.pk_columns[0])].name);
  std::string columns = key, values = "tandem_next_key(" + std::to_string(t.id) + ")";
  for (int c : t.value_columns) {
    const std::string name = quote_identifier(t.columns[static_cast<size_t>(c)].name);
    columns += ", " + name;
    values += ", NEW." + name;
  }
  return db->exec("CREATE TEMP TRIGGER IF NOT EXISTS tandem_key_" + std::to_string(t.id) + " BEFORE INSERT ON main." +
                  t.quoted_name() + " WHEN NEW." + key + " = -1 AND NOT tandem_merging() BEGIN INSERT INTO " +
                  t.quoted_name() + "(" + columns + ") VALUES (" + values + "); SELECT RAISE(IGNORE); END");
}

void Store::Impl::register_key_function() {
  // DIRECTONLY: only Tandem's TEMP triggers may call it, never a trigger or view of the file.
  sqlite3_create_function_v2(
      db->raw(), "tandem_next_key", 1, SQLITE_UTF8 | SQLITE_DIRECTONLY, this,
      [](sqlite3_context* ctx, int, sqlite3_value** argv) {
        auto* s = static_cast<Store::Impl*>(sqlite3_user_data(ctx));
        auto key = s->next_key(sqlite3_value_int64(argv[0]));
        if (!key.ok()) {
          sqlite3_result_error(ctx, key.status().message().c_str(), -1);
          return;
        }
        sqlite3_result_int64(ctx, *key);
      },
      nullptr, nullptr, nullptr);
}

}  // namespace tandem
