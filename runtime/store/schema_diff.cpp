#include "runtime/store/schema_diff.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>

namespace tandem {
namespace {

bool same_name(const std::string& a, const std::string& b) {
  return sqlite3_stricmp(a.c_str(), b.c_str()) == 0;  // SQLite's own rule for identifiers
}

// A declared type as SQLite reads it: case and runs of blanks do not matter.
std::string normal_type(const std::string& type) {
  std::string out;
  for (char ch : type) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isspace(c)) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
      continue;
    }
    out.push_back(static_cast<char>(std::toupper(c)));
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string shown(const std::string& text) { return text.empty() ? "(none)" : text; }

Status refuse(const std::string& table, const std::string& why) {
  return Status::Unsupported("schema change refused: table " + table + ": " + why);
}

// ---- a small SQL scanner for the column list of a CREATE TABLE statement ----

// Length of the token at `i` when it is quoted ('..', "..", `..`, [..]), else 0.
size_t quoted_length(const std::string& s, size_t i) {
  const char open = s[i];
  const char close = open == '[' ? ']' : open;
  if (open != '\'' && open != '"' && open != '`' && open != '[') return 0;
  size_t j = i + 1;
  while (j < s.size()) {
    if (s[j] == close) {
      if (close != ']' && j + 1 < s.size() && s[j + 1] == close) {  // a doubled quote
        j += 2;
        continue;
      }
      return j + 1 - i;
    }
    ++j;
  }
  return s.size() - i;  // unterminated: SQLite refused the statement before this point
}

// Length of the comment at `i`, else 0.
size_t comment_length(const std::string& s, size_t i) {
  if (s.compare(i, 2, "--") == 0) {
    size_t end = s.find('\n', i);
    return (end == std::string::npos ? s.size() : end + 1) - i;
  }
  if (s.compare(i, 2, "/*") == 0) {
    size_t end = s.find("*/", i + 2);
    return (end == std::string::npos ? s.size() : end + 2) - i;
  }
  return 0;
}

// `text` without leading and trailing blanks and comments.
std::string trimmed(const std::string& text) {
  size_t begin = 0;
  for (;;) {
    while (begin < text.size() && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
    size_t c = begin < text.size() ? comment_length(text, begin) : 0;
    if (c == 0) break;
    begin += c;
  }
  size_t end = text.size();
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
  return text.substr(begin, end - begin);
}

// The first token of an item: its unquoted text, and whether it was quoted.
std::pair<std::string, bool> first_token(const std::string& item) {
  if (item.empty()) return {"", false};
  if (size_t q = quoted_length(item, 0); q > 0) {
    const char close = item[0] == '[' ? ']' : item[0];
    std::string name;
    for (size_t i = 1; i + 1 < q; ++i) {
      name.push_back(item[i]);
      if (close != ']' && item[i] == close) ++i;  // a doubled quote stands for one
    }
    return {name, true};
  }
  size_t i = 0;
  while (i < item.size() && (std::isalnum(static_cast<unsigned char>(item[i])) || item[i] == '_' || item[i] == '$' ||
                             static_cast<unsigned char>(item[i]) >= 0x80))
    ++i;
  return {item.substr(0, i), false};
}

bool is_table_constraint(const std::pair<std::string, bool>& token) {
  if (token.second) return false;
  for (const char* word : {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"})
    if (same_name(token.first, word)) return true;
  return false;
}

}  // namespace

Result<std::vector<size_t>> appended_columns(const std::string& table, const std::vector<ColumnInfo>& before,
                                             const std::vector<ColumnInfo>& after) {
  constexpr size_t kMissing = static_cast<size_t>(-1);
  std::vector<size_t> position(before.size(), kMissing);  // where each existing column is now
  std::vector<bool> is_new(after.size(), true);
  for (size_t i = 0; i < before.size(); ++i) {
    for (size_t j = 0; j < after.size(); ++j) {
      if (!same_name(before[i].name, after[j].name)) continue;
      position[i] = j;
      is_new[j] = false;
      break;
    }
  }
  for (size_t i = 0; i < before.size(); ++i) {
    if (position[i] != kMissing) continue;
    const std::string& old_name = before[i].name;
    if (i < after.size() && is_new[i])
      return refuse(table, "renaming column " + old_name + " to " + after[i].name +
                               " is not supported: devices on the old schema still read and write " + old_name + "; keep " +
                               old_name + " and add " + after[i].name + " as a new column");
    return refuse(table, "dropping column " + old_name +
                             " is not supported: devices on the old schema still read and write it; keep it in the schema "
                             "(the application may stop using it)");
  }
  for (size_t j = 0; j < after.size() && j < before.size(); ++j) {
    if (is_new[j])
      return refuse(table, "new column " + after[j].name + " is declared among the existing columns; declare it after " +
                               before.back().name + " (ALTER TABLE ADD COLUMN appends it, so every device keeps one column order)");
  }
  for (size_t i = 0; i < before.size(); ++i) {
    const ColumnInfo& was = before[i];
    const ColumnInfo& now = after[position[i]];
    const std::string& name = was.name;
    if (position[i] != i)
      return refuse(table, "column " + name + " moved from position " + std::to_string(i + 1) + " to " +
                               std::to_string(position[i] + 1) + "; existing columns keep their order (new ones go after them)");
    if (was.pk_position != now.pk_position)
      return refuse(table, "changing the primary key (column " + name +
                               ") is not supported: a row is identified by its key on every device; create a new table with "
                               "the new key instead");
    if (normal_type(was.declared_type) != normal_type(now.declared_type))
      return refuse(table, "changing the type of column " + name + " from " + shown(was.declared_type) + " to " +
                               shown(now.declared_type) +
                               " is not supported: stored values and devices on the old schema keep the old type; add a new "
                               "column with the new type instead");
    if (was.not_null != now.not_null)
      return refuse(table, std::string(now.not_null ? "adding" : "removing") + " NOT NULL on column " + name +
                               " is not supported: SQLite cannot change it in place and devices on the old schema keep the "
                               "old rule; add a new column instead");
    if (was.has_default != now.has_default || was.default_sql != now.default_sql)
      return refuse(table, "changing the DEFAULT of column " + name + " from " + shown(was.default_sql) + " to " +
                               shown(now.default_sql) +
                               " is not supported: existing rows, and rows that devices on the old schema create, keep the "
                               "old DEFAULT; keep it and write the new value explicitly");
    if (!same_name(was.collation.empty() ? "BINARY" : was.collation, now.collation.empty() ? "BINARY" : now.collation))
      return refuse(table, "changing the collation of column " + name + " from " + shown(was.collation) + " to " +
                               shown(now.collation) + " is not supported; add a new column instead");
  }
  std::vector<size_t> added;
  for (size_t j = before.size(); j < after.size(); ++j) {
    const ColumnInfo& c = after[j];
    if (c.pk_position > 0)
      return refuse(table, "new column " + c.name +
                               " would join the primary key: the key of a replicated table cannot change; create a new table "
                               "with the new key instead");
    if (c.generated)
      return refuse(table, "new column " + c.name + " is a generated column, which cannot replicate; add an ordinary column");
    if (c.not_null && !c.has_default)
      return refuse(table, "new column " + c.name +
                               " is NOT NULL without a DEFAULT: existing rows, and rows written by devices on the old schema, "
                               "have no value for it; make it nullable or give it a constant DEFAULT");
    added.push_back(j);
  }
  return added;
}

Result<std::vector<std::pair<std::string, std::string>>> column_definitions(const std::string& sql) {
  // The column list: from the first '(' outside quotes and comments to its matching ')'.
  size_t i = 0;
  while (i < sql.size() && sql[i] != '(') {
    if (size_t n = quoted_length(sql, i) + comment_length(sql, i); n > 0) {
      i += n;
      continue;
    }
    ++i;
  }
  if (i == sql.size()) return Status::InvalidArgument("no column list in: " + sql);
  std::vector<std::string> items;
  std::string current;
  int depth = 0;
  for (++i; i < sql.size(); ++i) {
    if (size_t n = quoted_length(sql, i) + comment_length(sql, i); n > 0) {
      current += sql.substr(i, n);
      i += n - 1;
      continue;
    }
    const char c = sql[i];
    if (c == '(') ++depth;
    if (c == ')' && depth-- == 0) break;
    if (c == ',' && depth == 0) {
      items.push_back(trimmed(current));
      current.clear();
      continue;
    }
    current.push_back(c);
  }
  if (i == sql.size()) return Status::InvalidArgument("unterminated column list in: " + sql);
  items.push_back(trimmed(current));
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& item : items) {
    auto token = first_token(item);
    if (token.first.empty() || is_table_constraint(token)) continue;
    out.emplace_back(token.first, item);
  }
  return out;
}

Result<ColumnPlan> plan_added_columns(const TableInfo& live, const std::string& declared_sql) {
  OpenOptions scratch_options;
  scratch_options.wal = false;
  scratch_options.synchronous_full = false;
  TANDEM_ASSIGN_OR_RETURN(auto scratch, Database::open(":memory:", scratch_options));
  {
    auto st = scratch->prepare(declared_sql);
    Status ran = st.ok() ? (*st)->run() : st.status();
    if (!ran.ok()) return refuse(live.name, "its declaration cannot be read on its own: " + ran.message());
  }
  ColumnPlan plan;
  TANDEM_ASSIGN_OR_RETURN(plan.declared, read_columns(*scratch, live.name));
  TANDEM_ASSIGN_OR_RETURN(std::vector<size_t> added, appended_columns(live.name, live.columns, plan.declared));
  // The declaration must be a table Tandem can replicate (no UNIQUE, FOREIGN KEY, ...).
  if (auto checked = inspect_table(*scratch, live.name); !checked.ok())
    return Status::Unsupported("schema change refused: " + checked.status().message());
  if (added.empty()) return plan;
  TANDEM_ASSIGN_OR_RETURN(auto definitions, column_definitions(declared_sql));
  for (size_t j : added) {
    const std::string& name = plan.declared[j].name;
    auto found = std::find_if(definitions.begin(), definitions.end(), [&](const auto& d) { return same_name(d.first, name); });
    if (found == definitions.end())
      return refuse(live.name, "cannot find the definition of new column " + name + " in its CREATE TABLE statement");
    plan.additions.emplace_back(name, found->second);
  }
  return plan;
}

Status add_columns(Database& db, const TableInfo& live, const ColumnPlan& plan) {
  if (plan.additions.empty()) return Status::Ok();
  for (const auto& [name, definition] : plan.additions) {
    // prepare() refuses trailing statements: the definition is one column's text.
    auto st = db.prepare("ALTER TABLE main." + live.quoted_name() + " ADD COLUMN " + definition);
    Status ran = st.ok() ? (*st)->run() : st.status();
    if (!ran.ok()) {
      std::string why = ran.message();
      if (why.find("non-constant default") != std::string::npos)
        why = "its DEFAULT is not a constant (SQLite can give existing rows only a constant DEFAULT); use a constant "
              "DEFAULT and write other values explicitly";
      return refuse(live.name, "new column " + name + " cannot be added in place: " + why);
    }
  }
  TANDEM_ASSIGN_OR_RETURN(auto now, read_columns(db, live.name));
  auto extra = appended_columns(live.name, now, plan.declared);
  if (!extra.ok() || !extra->empty() || now.size() != plan.declared.size())
    return refuse(live.name, "adding its new columns did not give the declared columns (" +
                                 (extra.ok() ? std::string("columns missing") : extra.status().message()) + ")");
  return Status::Ok();
}

Status fill_default_values(TableInfo& t) {
  std::string columns;
  std::vector<size_t> defaulted;
  for (size_t i = 0; i < t.columns.size(); ++i) {
    const ColumnInfo& c = t.columns[i];
    if (!c.has_default) continue;
    columns += (defaulted.empty() ? "" : ", ") + std::string("c") + std::to_string(i) + " " + c.declared_type + " DEFAULT " +
               c.default_sql;
    defaulted.push_back(i);
  }
  if (defaulted.empty()) return Status::Ok();
  OpenOptions scratch_options;
  scratch_options.wal = false;
  scratch_options.synchronous_full = false;
  TANDEM_ASSIGN_OR_RETURN(auto scratch, Database::open(":memory:", scratch_options));
  TANDEM_RETURN_IF_ERROR(scratch->exec("CREATE TABLE d(" + columns + "); INSERT INTO d DEFAULT VALUES;")
                             .with_context("evaluating the DEFAULTs of table " + t.name));
  TANDEM_ASSIGN_OR_RETURN(auto st, scratch->prepare("SELECT * FROM d"));
  TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
  if (!row) return Status::Internal("no row evaluating the DEFAULTs of table " + t.name);
  for (size_t k = 0; k < defaulted.size(); ++k) {
    ColumnInfo& c = t.columns[defaulted[k]];
    Value v = st->column(static_cast<int>(k));
    if (c.real_affinity && v.is_integer()) v = Value::Real(static_cast<double>(v.integer()));
    c.default_value = std::move(v);
  }
  return Status::Ok();
}

Result<size_t> load_base_cells(Database& db, const TableInfo& t) {
  TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT value FROM tandem_meta WHERE key = ?1"));
  TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text("base_cells_" + std::to_string(t.id))));
  TANDEM_ASSIGN_OR_RETURN(bool found, st->step());
  if (!found) return t.value_columns.size();
  const Value v = st->column(0);
  if (!v.is_integer() || v.integer() < 0 || static_cast<size_t>(v.integer()) > t.value_columns.size())
    return Status::Internal("corrupt base_cells_" + std::to_string(t.id) + " in tandem_meta for table " + t.name);
  return static_cast<size_t>(v.integer());
}

Status save_base_cells(Database& db, const TableInfo& t) {
  TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("INSERT OR IGNORE INTO tandem_meta(key, value) VALUES (?1, ?2)"));
  TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text("base_cells_" + std::to_string(t.id))));
  TANDEM_RETURN_IF_ERROR(st->bind_int64(2, static_cast<int64_t>(t.base_cells)));
  return st->run();
}

}  // namespace tandem
