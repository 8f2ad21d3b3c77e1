#include "runtime/store/schema.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>

namespace tandem {
namespace {

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

// SQLite's affinity rules (datatype3.html, 3.1), reduced to the question that matters for keys:
// does the column leave a value's storage class alone (BLOB affinity, or ANY in STRICT
// tables)? Then 1 and 1.0 are different values that SQLite's key index holds as equal.
bool has_no_affinity(const std::string& declared_type) {
  std::string t = upper(declared_type);
  if (t.find("INT") != std::string::npos) return false;
  if (t.find("CHAR") != std::string::npos || t.find("CLOB") != std::string::npos || t.find("TEXT") != std::string::npos) return false;
  if (t.empty() || t.find("BLOB") != std::string::npos || t == "ANY") return true;
  return false;  // REAL, FLOAT, DOUBLE, NUMERIC and anything else: REAL or NUMERIC affinity
}

bool real_affinity(const std::string& declared_type) {
  std::string t = upper(declared_type);
  if (t.find("INT") != std::string::npos) return false;
  if (t.find("CHAR") != std::string::npos || t.find("CLOB") != std::string::npos || t.find("TEXT") != std::string::npos) return false;
  if (t.find("BLOB") != std::string::npos || t.empty()) return false;
  return t.find("REAL") != std::string::npos || t.find("FLOA") != std::string::npos || t.find("DOUB") != std::string::npos;
}

// `word` occurs in `text` as a whole word (not inside a longer identifier).
bool mentions_word(const std::string& text, const std::string& word) {
  auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
    const bool starts = at == 0 || !ident(text[at - 1]);
    const bool ends = at + word.size() == text.size() || !ident(text[at + word.size()]);
    if (starts && ends) return true;
  }
  return false;
}

Status refuse(const std::string& table, const std::string& why) {
  return Status::Unsupported("table " + table + " cannot be replicated: " + why);
}

}  // namespace

void realify(const std::vector<ColumnInfo>& columns, Row& row) {
  for (size_t i = 0; i < row.size() && i < columns.size(); ++i)
    if (columns[i].real_affinity && row[i].is_integer()) row[i] = Value::Real(static_cast<double>(row[i].integer()));
}

int TableInfo::column_index(const std::string& n) const {
  for (size_t i = 0; i < columns.size(); ++i)
    if (columns[i].name == n) return static_cast<int>(i);
  return -1;
}

int TableInfo::value_index(const std::string& n) const {
  for (size_t i = 0; i < value_columns.size(); ++i)
    if (columns[static_cast<size_t>(value_columns[i])].name == n) return static_cast<int>(i);
  return -1;
}

std::string TableInfo::quoted_name() const { return quote_identifier(name); }

std::string quote_identifier(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

bool is_reserved_table_name(const std::string& name) {
  return upper(name.substr(0, 7)) == "TANDEM_" || upper(name.substr(0, 7)) == "SQLITE_";
}

Result<std::vector<std::string>> application_tables(Database& db) {
  TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                                              "AND name NOT LIKE 'tandem\\_%' ESCAPE '\\' ORDER BY rowid"));
  std::vector<std::string> names;
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
    if (!row) break;
    names.push_back(st->column(0).bytes());
  }
  return names;
}

Result<std::vector<ColumnInfo>> read_columns(Database& db, const std::string& table) {
  TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1)"));
  TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(table)));
  std::vector<ColumnInfo> columns;
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
    if (!row) break;
    ColumnInfo c;
    c.name = st->column(0).bytes();
    c.declared_type = st->column(1).is_null() ? "" : st->column(1).bytes();
    c.not_null = st->column_int64(2) != 0;
    c.has_default = !st->column(3).is_null();
    if (c.has_default) c.default_sql = st->column(3).bytes();
    c.pk_position = static_cast<int>(st->column_int64(4));
    c.real_affinity = real_affinity(c.declared_type);
    c.generated = st->column_int64(5) != 0;
    // The collation is not in the pragma; SQLite's column metadata has it.
    const char* collation = nullptr;
    if (sqlite3_table_column_metadata(db.raw(), "main", table.c_str(), c.name.c_str(), nullptr, &collation, nullptr, nullptr,
                                      nullptr) == SQLITE_OK &&
        collation)
      c.collation = collation;
    columns.push_back(std::move(c));
  }
  if (columns.empty()) return Status::NotFound("no table named " + table);
  return columns;
}

Result<TableInfo> inspect_table(Database& db, const std::string& requested) {
  if (is_reserved_table_name(requested))
    return refuse(requested, "names starting with tandem_ or sqlite_ are reserved");

  TableInfo info;
  {
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1 COLLATE NOCASE"));
    TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(requested)));
    TANDEM_ASSIGN_OR_RETURN(bool found, st->step());
    if (!found) return Status::NotFound("no table named " + requested);
    info.name = st->column(0).bytes();
    std::string type = st->column(1).bytes();
    if (type != "table") return refuse(info.name, "it is a " + type + ", not an ordinary table");
    if (st->column_int64(2) != 0)
      return refuse(info.name, "WITHOUT ROWID tables are not supported (SQLite does not report which of their deletes are REPLACE conflicts); declare it as an ordinary table with PRIMARY KEY(...)");
  }

  TANDEM_ASSIGN_OR_RETURN(info.columns, read_columns(db, info.name));
  {
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1"));
    TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(info.name)));
    TANDEM_ASSIGN_OR_RETURN(bool found, st->step());
    // A false positive (a column named "check") only costs the pragma; a table whose SQL
    // cannot be read is treated as having one.
    info.may_have_check = !found || st->column(0).is_null() || mentions_word(upper(st->column(0).bytes()), "CHECK");
  }
  for (const auto& c : info.columns) {
    if (c.generated) return refuse(info.name, "generated column " + c.name + " is not supported");
    if (c.name == "-1") return refuse(info.name, "a column named \"-1\" would clash with the row sentinel");
  }

  std::vector<std::pair<int, int>> keyed;  // (pk position, column index)
  for (size_t i = 0; i < info.columns.size(); ++i) {
    const auto& c = info.columns[i];
    if (c.pk_position > 0)
      keyed.emplace_back(c.pk_position, static_cast<int>(i));
    else
      info.value_columns.push_back(static_cast<int>(i));
  }
  if (keyed.empty()) return refuse(info.name, "it has no explicit PRIMARY KEY (rows need a stable identity across replicas)");
  std::sort(keyed.begin(), keyed.end());
  for (auto& k : keyed) info.pk_columns.push_back(k.second);

  bool has_pk_index = false;
  {
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT name, \"unique\", origin FROM pragma_index_list(?1)"));
    TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(info.name)));
    std::vector<std::string> pk_indexes;
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
      if (!row) break;
      std::string index = st->column(0).bytes();
      bool unique = st->column_int64(1) != 0;
      std::string origin = st->column(2).bytes();
      if (origin == "pk") {
        has_pk_index = true;
        pk_indexes.push_back(index);
      } else if (unique) {
        TANDEM_ASSIGN_OR_RETURN(auto cols, db.prepare("SELECT group_concat(name, ', ') FROM pragma_index_info(?1)"));
        TANDEM_RETURN_IF_ERROR(cols->bind(1, Value::Text(index)));
        TANDEM_ASSIGN_OR_RETURN(bool listed, cols->step());
        const std::string on = listed && !cols->column(0).is_null() ? " on (" + cols->column(0).bytes() + ")" : "";
        return refuse(info.name, "UNIQUE constraint or index " + index + on +
                                     " is not supported (concurrent inserts on two replicas could make a merge violate it); "
                                     "a non-unique index (CREATE INDEX) is allowed");
      }
    }
    for (const auto& index : pk_indexes) {
      TANDEM_ASSIGN_OR_RETURN(auto xi, db.prepare("SELECT name, coll FROM pragma_index_xinfo(?1) WHERE key = 1"));
      TANDEM_RETURN_IF_ERROR(xi->bind(1, Value::Text(index)));
      for (;;) {
        TANDEM_ASSIGN_OR_RETURN(bool row, xi->step());
        if (!row) break;
        if (upper(xi->column(1).bytes()) != "BINARY")
          return refuse(info.name, "key column " + xi->column(0).bytes() + " uses collation " + xi->column(1).bytes() +
                                       "; replicated keys must compare bytewise (BINARY)");
      }
    }
  }
  info.integer_pk = info.pk_columns.size() == 1 && !has_pk_index &&
                    upper(info.columns[static_cast<size_t>(info.pk_columns[0])].declared_type) == "INTEGER";

  for (int k : info.pk_columns) {
    const auto& c = info.columns[static_cast<size_t>(k)];
    if (!info.integer_pk && !c.not_null)
      return refuse(info.name, "key column " + c.name + " must be declared NOT NULL (SQLite lets NULL into non-integer keys)");
    if (!info.integer_pk && has_no_affinity(c.declared_type))
      return refuse(info.name, "key column " + c.name + " needs a declared type with affinity (INTEGER, TEXT, REAL, NUMERIC): "
                               "without one SQLite holds 1 and 1.0 as the same key although they are different values");
  }
  for (int v : info.value_columns) {
    const auto& c = info.columns[static_cast<size_t>(v)];
    if (c.not_null && !c.has_default)
      return refuse(info.name, "column " + c.name +
                                   " is NOT NULL without a DEFAULT (a row can arrive before its value); add a DEFAULT");
  }

  {
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT count(*) FROM pragma_foreign_key_list(?1)"));
    TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(info.name)));
    TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
    if (row && st->column_int64(0) > 0)
      return refuse(info.name, "FOREIGN KEY clauses are not supported (a child row can arrive before its parent)");
  }
  return info;
}

}  // namespace tandem
