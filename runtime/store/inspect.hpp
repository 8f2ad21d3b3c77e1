// A store file described from outside (`tandem client inspect`): its site, its binding, its
// peers (for a client, the server and the cursor), the changes not yet acknowledged, the
// schema, and how many bytes Tandem's metadata takes next to the data.
//
// Read through a read-only connection in one read transaction, without the Store (whose
// open takes the file's lock and may write): it works while another process (a `tandem
// client watch`, an application) has the store open, and changes nothing.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/common/status.hpp"

namespace tandem {

struct InspectedPeer {
  std::string site_id;    // hex
  int64_t received = 0;   // the peer's db_version merged here through (a client's cursor)
  int64_t acked = 0;      // our db_version the peer holds through
};

struct InspectedColumn {
  std::string name, type;
  int pk = 0;  // 1-based position in the primary key, 0: not a key column
  bool not_null = false;
};

struct InspectedTable {
  std::string name;
  bool replicated = false;
  std::vector<InspectedColumn> columns;
  int64_t rows = 0;
};

struct StoreInspection {
  std::string path;
  std::string site_id;  // hex
  int64_t db_version = 0;
  std::string user, server;  // the sync binding (empty: never synced)
  std::vector<InspectedPeer> peers;  // the one received from most first: a client's server
  // Own changes (cells and row sentinels whose clock is this site's) with db_version above
  // what the server acknowledged (the first peer's acked; 0 without one), and the rows and
  // db_versions (transactions) they are in.
  int64_t pending_changes = 0, pending_rows = 0, pending_versions = 0;
  std::vector<InspectedTable> tables;  // application tables, replicated or not
  int64_t page_size = 0, page_count = 0, free_pages = 0;
  // Bytes of pages by role, from SQLite's dbstat table when this SQLite has it
  // (bytes_measured); otherwise only the file's size is known.
  bool bytes_measured = false;
  int64_t metadata_bytes = 0;  // tandem_* tables and their indexes
  int64_t data_bytes = 0;      // application tables and their indexes
  int64_t other_bytes = 0;     // sqlite_schema and SQLite's own tables
  std::map<std::string, int64_t> bytes_by_table;  // table (indexes counted with it) -> bytes
  std::string lock_holder;  // who holds the file's lock ("pid 42 (tandem client ...)"), empty: nobody
};

// Inspects the store at `path` (see the top of this file). NOT_FOUND when it does not exist,
// INVALID_ARGUMENT when it is not a Tandem store.
Result<StoreInspection> inspect_store(const std::string& path);

// Whether `schema` (the CREATE statements a process would open the file with) declares the
// file's tables exactly as they are, read the same way (read-only, no lock): OK, or
// INVALID_ARGUMENT naming the first declared table the file lacks or holds with other
// columns (a newer declaration would migrate it: docs/schema.md). Lets a leader opened
// without a schema admit a process that names one (docs/node.md).
Status check_schema_against_file(const std::string& path, const std::vector<std::string>& schema);

nlohmann::json inspection_json(const StoreInspection& s);
std::string inspection_text(const StoreInspection& s);

}  // namespace tandem
