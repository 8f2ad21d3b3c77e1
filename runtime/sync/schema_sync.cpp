#include "runtime/sync/schema_sync.hpp"

#include <sqlite3.h>

#include <cctype>

#include "runtime/store/schema.hpp"
#include "runtime/store/schema_diff.hpp"
#include "runtime/sync/frames.hpp"

namespace tandem::sync_schema {
namespace {

// The statement without leading whitespace and comments, upper-cased words collapsed:
// enough to recognise "CREATE TABLE" / "CREATE TEMP TABLE".
std::string lower(std::string s) {
  for (auto& ch : s)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  return s;
}

std::string leading_words(const std::string& sql, size_t words) {
  size_t i = 0;
  std::string out;
  size_t taken = 0;
  while (i < sql.size() && taken < words) {
    if (std::isspace(static_cast<unsigned char>(sql[i]))) { ++i; continue; }
    if (sql.compare(i, 2, "--") == 0) { while (i < sql.size() && sql[i] != '\n') ++i; continue; }
    if (sql.compare(i, 2, "/*") == 0) {
      size_t end = sql.find("*/", i + 2);
      i = end == std::string::npos ? sql.size() : end + 2;
      continue;
    }
    std::string word;
    while (i < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_'))
      word.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i++]))));
    if (word.empty()) break;
    if (!out.empty()) out.push_back(' ');
    out += word;
    ++taken;
  }
  return out;
}

int authorize_create_table_only(void*, int action, const char* a, const char*, const char*, const char*) {
  auto is_schema = [&] {
    return a != nullptr && (std::string(a) == "sqlite_master" || std::string(a) == "sqlite_schema");
  };
  switch (action) {
    case SQLITE_CREATE_INDEX:
      // A key that is not the rowid (a TEXT key, PRIMARY KEY(a, b)) makes SQLite create the
      // table's automatic index while it runs the CREATE TABLE; a client cannot name an index
      // of its own "sqlite_..." (reserved), and its CREATE INDEX statements are never run here.
      return a != nullptr && std::string(a).rfind("sqlite_autoindex_", 0) == 0 ? SQLITE_OK : SQLITE_DENY;
    case SQLITE_CREATE_TABLE:
    case SQLITE_SELECT:
    case SQLITE_FUNCTION:
    case SQLITE_READ:
      return SQLITE_OK;
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
      return is_schema() ? SQLITE_OK : SQLITE_DENY;
    default:
      return SQLITE_DENY;
  }
}

// Bounds on what a client's schema may fix in the user's file for good (the first hello of
// a user decides the channel's tables).
constexpr size_t kMaxIdentifierBytes = 128;
constexpr size_t kMaxDefaultBytes = 1024;       // the DEFAULT expression's text
constexpr int kMaxDefaultValueBytes = 64 * 1024;  // the value it evaluates to

// A table, column or type name: 1..kMaxIdentifierBytes bytes without control characters
// (a tab or a newline in a name breaks every tool that lists it, and logs).
Status check_identifier(const std::string& what, const std::string& name, bool may_be_empty = false) {
  if (name.empty() && !may_be_empty) return Status::InvalidArgument(what + " is empty");
  if (name.size() > kMaxIdentifierBytes)
    return Status::InvalidArgument(what + " is longer than " + std::to_string(kMaxIdentifierBytes) + " bytes (" +
                                   std::to_string(name.size()) + ")");
  for (char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f)
      return Status::InvalidArgument(what + " '" + sync_frames::log_escape(name) + "' contains a control character");
  }
  return Status::Ok();
}

// Every name and DEFAULT of a table created in the scratch database is checked; a DEFAULT
// is evaluated there under a small length limit (a merge evaluates it for every row that
// arrives without that column, so `zeroblob(500000000)` would cost that much each time).
Status check_table_bounds(Database& scratch, const std::string& table) {
  TANDEM_RETURN_IF_ERROR(check_identifier("table name", table));
  TANDEM_ASSIGN_OR_RETURN(auto info, scratch.prepare("SELECT name, type, dflt_value FROM pragma_table_info(?1)"));
  TANDEM_RETURN_IF_ERROR(info->bind(1, Value::Text(table)));
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(bool row, info->step());
    if (!row) break;
    const std::string column = info->column(0).bytes();
    TANDEM_RETURN_IF_ERROR(check_identifier("column name of table " + table, column));
    TANDEM_RETURN_IF_ERROR(check_identifier("declared type of " + table + "." + column, info->column(1).bytes(), true));
    const Value dflt = info->column(2);
    if (dflt.is_null()) continue;
    const std::string expr = dflt.bytes();
    if (expr.size() > kMaxDefaultBytes)
      return Status::InvalidArgument("DEFAULT of " + table + "." + column + " is longer than " +
                                     std::to_string(kMaxDefaultBytes) + " bytes");
    const int old_limit = sqlite3_limit(scratch.raw(), SQLITE_LIMIT_LENGTH, kMaxDefaultValueBytes);
    sqlite3_set_authorizer(scratch.raw(), authorize_create_table_only, nullptr);  // the text is the client's
    Status evaluated = [&]() -> Status {
      TANDEM_ASSIGN_OR_RETURN(auto st, scratch.prepare("SELECT " + expr));
      TANDEM_ASSIGN_OR_RETURN(bool got, st->step());
      if (!got) return Status::InvalidArgument("no value");
      return Status::Ok();
    }();
    sqlite3_set_authorizer(scratch.raw(), nullptr, nullptr);
    sqlite3_limit(scratch.raw(), SQLITE_LIMIT_LENGTH, old_limit);
    if (!evaluated.ok())
      return Status::InvalidArgument("DEFAULT of " + table + "." + column + " must be a constant of at most " +
                                     std::to_string(kMaxDefaultValueBytes) + " bytes: " + evaluated.message());
  }
  return Status::Ok();
}

bool same_shape(const TableInfo& a, const TableInfo& b) {
  if (a.columns.size() != b.columns.size() || a.pk_columns != b.pk_columns) return false;
  for (size_t i = 0; i < a.columns.size(); ++i)
    if (a.columns[i].name != b.columns[i].name) return false;
  return true;
}

}  // namespace

Result<std::vector<std::string>> split_statements(const std::string& sql) {
  std::vector<std::string> out;
  std::string current;
  for (char c : sql) {
    current.push_back(c);
    if (c == ';' && sqlite3_complete(current.c_str())) {
      if (!leading_words(current, 1).empty()) out.push_back(current);
      current.clear();
    }
  }
  if (!leading_words(current, 1).empty()) {
    current += ";";
    if (!sqlite3_complete(current.c_str())) return Status::InvalidArgument("schema ends inside a statement");
    out.push_back(current);
  }
  return out;
}

std::string if_not_exists(const std::string& statement) {
  const std::string words = leading_words(statement, 5);
  size_t keyword_words = 0;
  if (words.rfind("CREATE TABLE", 0) == 0) keyword_words = 2;
  else if (words.rfind("CREATE INDEX", 0) == 0) keyword_words = 2;
  else if (words.rfind("CREATE UNIQUE INDEX", 0) == 0) keyword_words = 3;
  if (keyword_words == 0) return statement;
  if (words.find("IF NOT EXISTS") != std::string::npos) return statement;
  // Find the end of the keyword words in the original text and insert after them.
  size_t i = 0, seen = 0;
  while (i < statement.size() && seen < keyword_words) {
    if (std::isspace(static_cast<unsigned char>(statement[i]))) { ++i; continue; }
    if (statement.compare(i, 2, "--") == 0) { while (i < statement.size() && statement[i] != '\n') ++i; continue; }
    if (statement.compare(i, 2, "/*") == 0) {
      size_t end = statement.find("*/", i + 2);
      i = end == std::string::npos ? statement.size() : end + 2;
      continue;
    }
    while (i < statement.size() && (std::isalnum(static_cast<unsigned char>(statement[i])) || statement[i] == '_')) ++i;
    ++seen;
  }
  return statement.substr(0, i) + " IF NOT EXISTS" + statement.substr(i);
}

Result<std::vector<std::string>> adopt_tables(Store& store, const std::vector<std::string>& statements, DeclaredColumns* columns) {
  OpenOptions scratch_options;
  scratch_options.wal = false;
  scratch_options.synchronous_full = false;
  TANDEM_ASSIGN_OR_RETURN(auto scratch, Database::open(":memory:", scratch_options));
  sqlite3_limit(scratch->raw(), SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_limit(scratch->raw(), SQLITE_LIMIT_LENGTH, 1 << 20);
  sqlite3_set_authorizer(scratch->raw(), authorize_create_table_only, nullptr);

  std::vector<std::string> tables;
  for (const auto& text : statements) {
    TANDEM_ASSIGN_OR_RETURN(auto pieces, split_statements(text));
    for (const auto& statement : pieces) {
      const std::string words = leading_words(statement, 2);
      if (words != "CREATE TABLE") continue;  // indexes, triggers, views: local to the client
      auto st = scratch->prepare(statement);
      if (!st.ok()) return Status::InvalidArgument("schema statement refused: " + st.status().message());
      TANDEM_RETURN_IF_ERROR((*st)->run().with_context("schema statement refused"));
    }
  }
  // The client's statements are done: Tandem's own inspection below may use PRAGMAs.
  sqlite3_set_authorizer(scratch->raw(), nullptr, nullptr);
  {
    TANDEM_ASSIGN_OR_RETURN(auto list, scratch->prepare(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"));
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, list->step());
      if (!row) break;
      tables.push_back(list->column(0).bytes());
      tables.push_back(list->column(1).bytes());
    }
  }
  // Check everything before changing the store, so a refused schema changes nothing.
  std::vector<std::pair<std::string, std::string>> missing, newer;
  for (size_t i = 0; i < tables.size(); i += 2) {
    const std::string& name = tables[i];
    TANDEM_RETURN_IF_ERROR(check_table_bounds(*scratch, name).with_context("schema refused"));
    auto declared = inspect_table(*scratch, name);
    if (!declared.ok()) return declared.status().with_context("table " + name + " cannot replicate");
    if (columns) {
      auto& listed = (*columns)[lower(name)];
      for (const auto& c : declared->columns) listed.insert(lower(c.name));
    }
    const TableInfo* existing = store.table(name);
    if (existing == nullptr) {
      // (A table a failed registration left unregistered is declared again here, and its
      // CREATE ... IF NOT EXISTS below is then a no-op.)
      missing.emplace_back(name, tables[i + 1]);
    } else if (!same_shape(*existing, *declared)) {
      // A device on an older schema (a prefix of ours) is fine; a newer one's columns are
      // appended here; anything else is refused, with the difference.
      if (appended_columns(name, declared->columns, existing->columns).ok()) continue;
      auto added = appended_columns(name, existing->columns, declared->columns);
      if (!added.ok())
        return Status::InvalidArgument("table " + name + " differs from the server's (columns or primary key): " +
                                       added.status().message());
      newer.emplace_back(name, if_not_exists(tables[i + 1]));
    }
  }
  // Every schema change of the hello in one transaction (Store::execute_schema): a refusal
  // from SQLite itself (a DEFAULT it will not add) leaves nothing adopted nor created. The
  // new tables are registered afterwards, each in a transaction of its own; a registration
  // that fails leaves a table that is created but not replicated, which the next hello
  // registers (IF NOT EXISTS makes its CREATE a no-op then).
  if (!newer.empty() || !missing.empty()) {
    std::string sql;
    std::string names;
    for (const auto& [name, statement] : newer) {
      sql += statement + ";\n";
      names += (names.empty() ? "" : ", ") + name;
    }
    for (const auto& [name, statement] : missing) {
      sql += if_not_exists(statement) + ";\n";
      names += (names.empty() ? "" : ", ") + name;
    }
    TANDEM_RETURN_IF_ERROR(store.execute_schema(sql).with_context("adopting the declaration of table(s) " + names));
  }
  for (const auto& [name, sql] : missing)
    TANDEM_RETURN_IF_ERROR(store.register_table(name).with_context("registering table " + name));
  std::vector<std::string> names;
  for (size_t i = 0; i < tables.size(); i += 2) names.push_back(tables[i]);
  return names;
}

Result<std::vector<std::string>> table_statements(Store& store) {
  std::vector<std::string> statements;
  for (const auto& name : store.replicated_tables()) {
    TANDEM_ASSIGN_OR_RETURN(auto read, store.query("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                                                   {Value::Text(name)}));
    if (read.rows.size() == 1 && !read.rows[0].empty()) statements.push_back(read.rows[0][0].bytes());
  }
  return statements;
}

}  // namespace tandem::sync_schema
