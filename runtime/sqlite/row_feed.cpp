#include "runtime/sqlite/row_feed.hpp"

#include <sqlite3.h>

#include <cstring>

namespace tandem {
namespace {

struct FeedTable {
  sqlite3_vtab base;
  RowFeed* feed;
};

struct FeedCursor {
  sqlite3_vtab_cursor base;
  RowFeed* feed;
  size_t row;
};

int x_create(sqlite3* db, void* aux, int, const char* const*, sqlite3_vtab** out, char**) {
  auto* feed = static_cast<RowFeed*>(aux);
  std::string decl = "CREATE TABLE x(";
  for (int i = 0; i < feed->columns(); ++i) decl += (i ? ", c" : "c") + std::to_string(i);
  decl += ")";
  int rc = sqlite3_declare_vtab(db, decl.c_str());
  if (rc != SQLITE_OK) return rc;
  auto* t = static_cast<FeedTable*>(sqlite3_malloc(sizeof(FeedTable)));
  if (!t) return SQLITE_NOMEM;
  std::memset(t, 0, sizeof *t);
  t->feed = feed;
  *out = &t->base;
  return SQLITE_OK;
}

int x_disconnect(sqlite3_vtab* t) {
  sqlite3_free(t);
  return SQLITE_OK;
}

int x_best_index(sqlite3_vtab* t, sqlite3_index_info* info) {
  // Always a full scan: the feed is meant to drive the loop (joins use CROSS JOIN).
  info->estimatedCost = static_cast<double>(reinterpret_cast<FeedTable*>(t)->feed->rows() + 1);
  info->estimatedRows = static_cast<sqlite3_int64>(reinterpret_cast<FeedTable*>(t)->feed->rows() + 1);
  return SQLITE_OK;
}

int x_open(sqlite3_vtab* t, sqlite3_vtab_cursor** out) {
  auto* c = static_cast<FeedCursor*>(sqlite3_malloc(sizeof(FeedCursor)));
  if (!c) return SQLITE_NOMEM;
  std::memset(c, 0, sizeof *c);
  c->feed = reinterpret_cast<FeedTable*>(t)->feed;
  *out = &c->base;
  return SQLITE_OK;
}

int x_close(sqlite3_vtab_cursor* c) {
  sqlite3_free(c);
  return SQLITE_OK;
}

int x_filter(sqlite3_vtab_cursor* c, int, const char*, int, sqlite3_value**) {
  reinterpret_cast<FeedCursor*>(c)->row = 0;
  return SQLITE_OK;
}

int x_next(sqlite3_vtab_cursor* c) {
  ++reinterpret_cast<FeedCursor*>(c)->row;
  return SQLITE_OK;
}

int x_eof(sqlite3_vtab_cursor* c) {
  auto* cur = reinterpret_cast<FeedCursor*>(c);
  return cur->row >= cur->feed->rows();
}

int x_column(sqlite3_vtab_cursor* c, sqlite3_context* ctx, int column) {
  auto* cur = reinterpret_cast<FeedCursor*>(c);
  const Value& v = cur->feed->cell(cur->row, column);
  switch (v.type()) {
    case Value::Type::null: sqlite3_result_null(ctx); break;
    case Value::Type::integer: sqlite3_result_int64(ctx, v.integer()); break;
    case Value::Type::real: sqlite3_result_double(ctx, v.real()); break;
    case Value::Type::text:
      sqlite3_result_text64(ctx, v.bytes().data(), v.bytes().size(), SQLITE_STATIC, SQLITE_UTF8);
      break;
    case Value::Type::blob:
      if (v.bytes().empty())
        sqlite3_result_zeroblob(ctx, 0);
      else
        sqlite3_result_blob64(ctx, v.bytes().data(), v.bytes().size(), SQLITE_STATIC);
      break;
  }
  return SQLITE_OK;
}

int x_rowid(sqlite3_vtab_cursor* c, sqlite3_int64* rowid) {
  *rowid = static_cast<sqlite3_int64>(reinterpret_cast<FeedCursor*>(c)->row);
  return SQLITE_OK;
}

sqlite3_module make_module() {
  sqlite3_module m;
  std::memset(&m, 0, sizeof m);
  m.xCreate = x_create;
  m.xConnect = x_create;
  m.xBestIndex = x_best_index;
  m.xDisconnect = x_disconnect;
  m.xDestroy = x_disconnect;
  m.xOpen = x_open;
  m.xClose = x_close;
  m.xFilter = x_filter;
  m.xNext = x_next;
  m.xEof = x_eof;
  m.xColumn = x_column;
  m.xRowid = x_rowid;
  return m;
}

const sqlite3_module kModule = make_module();

}  // namespace

Result<std::unique_ptr<RowFeed>> RowFeed::attach(Database& db, const std::string& name, int columns) {
  if (columns < 1) return Status::InvalidArgument("a row feed needs at least one column");
  std::unique_ptr<RowFeed> feed(new RowFeed(name, columns));
  std::string module = "tandem_feed_" + name;
  int rc = sqlite3_create_module_v2(db.raw(), module.c_str(), &kModule, feed.get(), nullptr);
  if (rc != SQLITE_OK) return db.error(rc);
  TANDEM_RETURN_IF_ERROR(db.exec("CREATE VIRTUAL TABLE temp." + name + " USING " + module));
  return feed;
}

RowFeed::~RowFeed() = default;

}  // namespace tandem
