#include "runtime/store/inspect.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "runtime/common/process_lock.hpp"
#include "runtime/sqlite/database.hpp"
#include "runtime/store/schema.hpp"
#include "runtime/store/schema_diff.hpp"
#include "runtime/store/store.hpp"
#include "runtime/store/store_format.hpp"

namespace tandem {
namespace {

// Whether the kernel lists an flock on the file (Linux's /proc/locks: "1: FLOCK ADVISORY
// WRITE <pid> <major>:<minor>:<inode> 0 EOF", the device numbers in hex). Reading it takes no
// lock: taking even a shared one for a moment could make the owner's next open fail.
bool flock_held(const std::string& lock_path) {
  struct stat st{};
  if (::stat(lock_path.c_str(), &st) != 0) return false;
  std::ifstream locks("/proc/locks");
  if (!locks) return false;
  char dev[64];
  std::snprintf(dev, sizeof dev, "%02x:%02x:%llu", major(st.st_dev), minor(st.st_dev), static_cast<unsigned long long>(st.st_ino));
  for (std::string line; std::getline(locks, line);) {
    std::istringstream in(line);
    std::string n, kind, advisory, mode, pid, where;
    in >> n >> kind;
    if (kind == "->") in >> kind;  // a waiter's line
    in >> advisory >> mode >> pid >> where;
    if (kind == "FLOCK" && where == dev) return true;
  }
  return false;
}

// The holder writes "pid N (command)" into the lock file and clears it when it lets go
// (process_lock.hpp); one killed with -9 leaves it behind, hence the check that N lives.
bool holder_alive(const std::string& holder) {
  if (holder.rfind("pid ", 0) != 0) return false;
  const long pid = std::strtol(holder.c_str() + 4, nullptr, 10);
  return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

std::string lock_holder(const std::string& path) {
  const std::string lock = database_lock_path(path);
  if (lock.empty()) return {};
  std::ifstream in(lock);
  std::string holder;
  std::getline(in, holder);
  if (flock_held(lock)) return holder.empty() ? std::string("a process (pid unknown)") : holder;
  return holder_alive(holder) ? holder : std::string();
}

// Counts this site's changes above `acked` in one replicated table's clock records.
Status count_pending(Database& db, const TableInfo& t, int64_t acked, StoreInspection& out, std::set<int64_t>& versions) {
  TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT cl, clock FROM " + t.clock_table()));
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
    if (!row) break;
    RowClock clock;
    clock.exists = true;
    clock.cl = st->column_int64(0);
    const Value bytes = st->column(1);
    TANDEM_RETURN_IF_ERROR(decode_clock(bytes.bytes(), t.value_columns.size(), t.base_cells, &clock).with_context("clock of a row of " + t.name));
    int64_t in_row = 0;
    auto see = [&](const CellClock& c) {
      if (!c.present() || c.site != 0 || c.db_version <= acked) return;
      ++in_row;
      versions.insert(c.db_version);
    };
    for (const auto& c : clock.cells) see(c);
    see(clock.sentinel);
    out.pending_changes += in_row;
    if (in_row > 0) ++out.pending_rows;
  }
  return Status::Ok();
}

Status read_sizes(Database& db, StoreInspection& out) {
  auto int_pragma = [&](const std::string& name) -> Result<int64_t> {
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("PRAGMA " + name));
    TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
    return row ? st->column_int64(0) : 0;
  };
  TANDEM_ASSIGN_OR_RETURN(out.page_size, int_pragma("page_size"));
  TANDEM_ASSIGN_OR_RETURN(out.page_count, int_pragma("page_count"));
  TANDEM_ASSIGN_OR_RETURN(out.free_pages, int_pragma("freelist_count"));
  // dbstat is a compile-time option of SQLite: without it only the totals are known.
  auto st = db.prepare(
      "SELECT coalesce(s.tbl_name, d.name), sum(d.pgsize) FROM dbstat AS d LEFT JOIN sqlite_schema AS s ON s.name = d.name "
      "GROUP BY 1");
  if (!st.ok()) return Status::Ok();
  for (;;) {
    auto row = (*st)->step();
    if (!row.ok()) return Status::Ok();
    if (!*row) break;
    const std::string table = (*st)->column(0).bytes();
    const int64_t bytes = (*st)->column_int64(1);
    out.bytes_by_table[table] += bytes;
    if (table.rfind("tandem_", 0) == 0) out.metadata_bytes += bytes;
    else if (table.rfind("sqlite_", 0) == 0) out.other_bytes += bytes;
    else out.data_bytes += bytes;
  }
  out.bytes_measured = true;
  return Status::Ok();
}

// The application's tables (not SQLite's, not Tandem's), by name.
Result<std::vector<std::string>> application_table_names(Database& db) {
  TANDEM_ASSIGN_OR_RETURN(auto names, application_tables(db));
  std::sort(names.begin(), names.end());
  return names;
}

Status read_all(Database& db, StoreInspection& out) {
  {
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'tandem_meta'"));
    TANDEM_ASSIGN_OR_RETURN(bool found, st->step());
    if (!found) return Status::InvalidArgument("'" + out.path + "' is not a Tandem database (no tandem_meta table)");
  }
  {
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT key, value FROM tandem_meta WHERE key IN ('site_id', 'db_version', 'sync_user', 'sync_server')"));
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
      if (!row) break;
      const std::string key = st->column(0).bytes();
      if (key == "site_id") {
        auto site = site_from_bytes(st->column(1).bytes());
        if (site) out.site_id = site_hex(*site);
      } else if (key == "db_version") {
        out.db_version = st->column_int64(1);
      } else if (key == "sync_user") {
        out.user = st->column(1).bytes();
      } else {
        out.server = st->column(1).bytes();
      }
    }
  }
  {
    // The same order as Store::peers(): a client's server is the peer it received most from.
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT site_id, received, acked FROM tandem_peers ORDER BY received DESC, site_id"));
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
      if (!row) break;
      auto site = site_from_bytes(st->column(0).bytes());
      out.peers.push_back({site ? site_hex(*site) : std::string("?"), st->column_int64(1), st->column_int64(2)});
    }
  }
  std::set<std::string> replicated;
  {
    const int64_t acked = out.peers.empty() ? 0 : out.peers.front().acked;
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT id, name FROM tandem_tables ORDER BY id"));
    std::set<int64_t> versions;
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
      if (!row) break;
      const std::string name = st->column(1).bytes();
      TANDEM_ASSIGN_OR_RETURN(TableInfo info, inspect_table(db, name));
      info.id = st->column_int64(0);
      TANDEM_ASSIGN_OR_RETURN(info.base_cells, load_base_cells(db, info));
      TANDEM_RETURN_IF_ERROR(count_pending(db, info, acked, out, versions));
      replicated.insert(name);
    }
    out.pending_versions = static_cast<int64_t>(versions.size());
  }
  {
    TANDEM_ASSIGN_OR_RETURN(auto names, application_table_names(db));
    for (auto& name : names) {
      InspectedTable t;
      t.name = std::move(name);
      t.replicated = replicated.count(t.name) > 0;
      TANDEM_ASSIGN_OR_RETURN(auto columns, read_columns(db, t.name));
      for (const auto& c : columns) t.columns.push_back({c.name, c.declared_type, c.pk_position, c.not_null});
      TANDEM_ASSIGN_OR_RETURN(auto n, db.prepare("SELECT count(*) FROM " + quote_identifier(t.name)));
      TANDEM_ASSIGN_OR_RETURN(bool counted, n->step());
      if (counted) t.rows = n->column_int64(0);
      out.tables.push_back(std::move(t));
    }
  }
  return read_sizes(db, out);
}

std::string percent(int64_t part, int64_t whole) {
  if (whole <= 0) return "0%";
  return std::to_string((part * 100 + whole / 2) / whole) + "%";
}

}  // namespace

Result<StoreInspection> inspect_store(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return Status::NotFound("no database at '" + path + "'");
  StoreInspection out;
  out.path = path;
  out.lock_holder = lock_holder(path);
  OpenOptions o;
  o.create = false;
  o.read_only = true;
  TANDEM_ASSIGN_OR_RETURN(auto db, Database::open(path, o));
  // One read transaction: every figure is of the same version, whatever the owner writes.
  TANDEM_RETURN_IF_ERROR(db->begin_deferred());
  Status s = read_all(*db, out);
  db->rollback();
  if (!s.ok()) return s;
  return out;
}

Status check_schema_against_file(const std::string& path, const std::vector<std::string>& schema) {
  // The declaration as SQLite reads it: built in a scratch database, so both sides are
  // compared column by column (names, types, keys, constraints), never as text.
  TANDEM_ASSIGN_OR_RETURN(auto scratch, Database::open(":memory:"));
  for (const auto& sql : schema) TANDEM_RETURN_IF_ERROR(scratch->exec(sql).with_context("this process's schema"));
  TANDEM_ASSIGN_OR_RETURN(auto declared, application_table_names(*scratch));
  OpenOptions o;
  o.create = false;
  o.read_only = true;
  TANDEM_ASSIGN_OR_RETURN(auto db, Database::open(path, o));
  TANDEM_RETURN_IF_ERROR(db->begin_deferred());
  Status out = Status::Ok();
  for (const auto& table : declared) {
    TANDEM_ASSIGN_OR_RETURN(auto wanted, read_columns(*scratch, table));
    auto held = read_columns(*db, table);
    if (!held.ok()) {
      out = Status::InvalidArgument("another schema: this process declares table " + table + ", which the database does not hold yet");
      break;
    }
    auto added = appended_columns(table, *held, wanted);
    if (!added.ok()) {
      out = Status::InvalidArgument("another schema: " + added.status().message());
      break;
    }
    if (!added->empty()) {
      std::string names;
      for (size_t i : *added) names += (names.empty() ? "" : ", ") + wanted[i].name;
      out = Status::InvalidArgument("another schema: this process's declaration of " + table + " adds column(s) " + names +
                                    " that the database does not hold yet (a newer schema): end every process of this database, then "
                                    "start them again with the new --schema (the first to open the file migrates it)");
      break;
    }
  }
  db->rollback();
  return out;
}

nlohmann::json inspection_json(const StoreInspection& s) {
  nlohmann::json j;
  j["path"] = s.path;
  j["site_id"] = s.site_id;
  j["db_version"] = s.db_version;
  j["user"] = s.user;
  j["server"] = s.server;
  const bool has_server = !s.peers.empty();
  j["server_site_id"] = has_server ? s.peers.front().site_id : "";
  j["cursor"] = has_server ? s.peers.front().received : 0;
  j["acked_db_version"] = has_server ? s.peers.front().acked : 0;
  j["pending"] = {{"changes", s.pending_changes}, {"rows", s.pending_rows}, {"versions", s.pending_versions}};
  nlohmann::json peers = nlohmann::json::array();
  for (const auto& p : s.peers) peers.push_back({{"site_id", p.site_id}, {"received", p.received}, {"acked", p.acked}});
  j["peers"] = peers;
  nlohmann::json tables = nlohmann::json::array();
  for (const auto& t : s.tables) {
    nlohmann::json columns = nlohmann::json::array();
    for (const auto& c : t.columns) columns.push_back({{"name", c.name}, {"type", c.type}, {"pk", c.pk}, {"not_null", c.not_null}});
    tables.push_back({{"name", t.name}, {"replicated", t.replicated}, {"rows", t.rows}, {"columns", columns}});
  }
  j["tables"] = tables;
  nlohmann::json size = {{"bytes", s.page_size * s.page_count}, {"page_size", s.page_size}, {"pages", s.page_count},
                         {"free_pages", s.free_pages}, {"measured", s.bytes_measured}};
  if (s.bytes_measured) {
    size["metadata_bytes"] = s.metadata_bytes;
    size["data_bytes"] = s.data_bytes;
    size["other_bytes"] = s.other_bytes;
    size["by_table"] = s.bytes_by_table;
  }
  j["size"] = size;
  j["lock_holder"] = s.lock_holder;
  return j;
}

std::string inspection_text(const StoreInspection& s) {
  std::ostringstream o;
  o << "database  " << s.path << "\n";
  o << "site      " << s.site_id << " (db_version " << s.db_version << ")\n";
  o << "user      " << (s.user.empty() ? "(never synced)" : s.user) << "\n";
  o << "server    " << (s.server.empty() ? "(never synced)" : s.server) << "\n";
  if (!s.peers.empty()) {
    const auto& p = s.peers.front();
    o << "          site " << p.site_id << ", cursor " << p.received << " (server changes merged here through), acked "
      << p.acked << " (own changes the server holds through)\n";
    for (size_t i = 1; i < s.peers.size(); ++i)
      o << "          also peer " << s.peers[i].site_id << ": received " << s.peers[i].received << ", acked " << s.peers[i].acked
        << "\n";
  }
  o << "pending   " << s.pending_changes << " changes in " << s.pending_rows << " rows over " << s.pending_versions
    << " transactions not yet acknowledged by the server\n";
  o << "open by   " << (s.lock_holder.empty() ? "no process" : s.lock_holder) << "\n";
  o << "tables\n";
  for (const auto& t : s.tables) {
    o << "  " << t.name << " (" << (t.replicated ? "replicated" : "local only") << ", " << t.rows << " rows):";
    for (size_t i = 0; i < t.columns.size(); ++i) {
      const auto& c = t.columns[i];
      o << (i ? ", " : " ") << c.name;
      if (!c.type.empty()) o << " " << c.type;
      if (c.pk) o << " PRIMARY KEY";
      if (c.not_null) o << " NOT NULL";
    }
    o << "\n";
  }
  const int64_t bytes = s.page_size * s.page_count;
  o << "size      " << bytes << " bytes (" << s.page_count << " pages of " << s.page_size << ", " << s.free_pages << " free)\n";
  if (s.bytes_measured) {
    o << "          metadata " << s.metadata_bytes << " bytes (" << percent(s.metadata_bytes, bytes) << "), data " << s.data_bytes
      << " bytes (" << percent(s.data_bytes, bytes) << "), SQLite's own " << s.other_bytes << " bytes\n";
    if (s.data_bytes > 0)
      o << "          metadata per data byte: " << (s.metadata_bytes * 100 / s.data_bytes) / 100.0 << "\n";
  } else {
    o << "          (this SQLite has no dbstat table: metadata and data sizes are not measured)\n";
  }
  return o.str();
}

}  // namespace tandem
