// Binding a parsed query to a database schema: the plan the IVM maintains.
//
// The FROM list becomes occurrences 0..n-1 forming a tree: every JOIN's ON condition must hold
// at least one equality between a column of the joined table and a column of ONE earlier
// occurrence (its parent) and may otherwise reference only those two. WHERE is split into
// conjuncts; a conjunct over one occurrence that no LEFT JOIN can NULL-extend is pushed into
// that occurrence's lookups ("local filter"); the rest is evaluated on complete tuples.
// Aggregate queries compile their output, HAVING and ORDER BY over group keys and aggregate
// slots; a bare column that is neither grouped nor aggregated is refused.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proto/query.pb.h"
#include "runtime/common/status.hpp"
#include "runtime/ivm/expr.hpp"
#include "runtime/sqlite/database.hpp"

namespace tandem::ivm {

struct TableSchema {
  std::string name;
  std::vector<std::string> columns;
  std::vector<std::string> declared_types;
  std::vector<Affinity> affinity;
  std::vector<std::optional<std::string>> default_sql;  // DEFAULT clause text, if any
  std::vector<bool> not_null;
  std::vector<int> pk;  // column indexes in primary-key order
  int column_index(const std::string& name) const;  // case-insensitive, -1 if absent
};

// Reads a table's columns, affinities, defaults and primary key. Refuses tables without a
// PRIMARY KEY, WITHOUT ROWID tables and columns with a non-BINARY collation.
Result<TableSchema> read_table_schema(Database& db, const std::string& table);

struct JoinEquality {
  int column = -1;         // column of this occurrence
  int parent_column = -1;  // column of the parent occurrence
  Affinity comparison = Affinity::none;
};

struct Occurrence {
  std::shared_ptr<const TableSchema> table;
  std::string name;        // alias, or the table name
  int parent = -1;         // -1 for occurrence 0
  bool left_join = false;
  bool nullable = false;   // this or an ancestor is LEFT-joined
  std::vector<JoinEquality> equalities;
  std::optional<CExpr> on;            // the whole ON condition (tuple context)
  std::optional<CExpr> local_filter;  // conjuncts over this occurrence only (tuple context)
  std::string local_filter_sql;       // the same as SQL over the bare table name ("" = TRUE)
  std::vector<int> children;
  std::vector<int> needed_columns;    // columns the query reads (for lean hydration)
};

struct AggregateSpec {
  enum class Func : uint8_t { count_star, count, sum, min, max, avg };
  Func func = Func::count_star;
  std::optional<CExpr> argument;  // tuple context
  std::string argument_sql;       // the argument as SQL (MIN/MAX refills)
};

struct OrderKey {
  CExpr expr;  // tuple context (plain queries) or group context (aggregate queries),
               // or a result column reference for DISTINCT (kind column, occurrence -1)
  bool descending = false;
};

struct Plan {
  query::Query query;
  Row params;
  std::vector<Occurrence> occurrences;
  std::optional<CExpr> residual_where;   // tuple context
  std::vector<std::string> column_names;
  bool distinct = false;
  bool aggregate = false;
  std::vector<CExpr> outputs;            // tuple context, or group context when aggregate
  std::vector<CExpr> group_keys;         // tuple context
  std::vector<std::string> group_sql;    // each group key as SQL
  std::vector<AggregateSpec> aggregates;
  std::optional<CExpr> having;           // group context
  std::vector<OrderKey> order;
  std::vector<std::string> order_sql;    // plain queries: each ORDER BY key as SQL
  std::vector<std::string> output_sql;   // each result column as SQL
  std::string where_sql;                 // the WHERE clause as SQL ("" = none)
  // DISTINCT: order keys are result column indexes (order_columns) instead of expressions.
  std::vector<int> order_columns;
  int64_t limit = -1;                    // -1: none
  int64_t offset = 0;
  std::string sql;                       // the whole query rendered (the oracle's SQL)

  bool ordered() const { return !order.empty() || !order_columns.empty(); }
  // SQL selecting every needed column of every occurrence for the tuples of FROM/JOIN/WHERE,
  // with a rowid per LEFT-joined occurrence to tell NULL-extension from NULL values.
  std::string tuple_sql() const;
};

// Binds `q` with `params` (one per ? parameter) against the schema in `db`.
Result<std::shared_ptr<const Plan>> bind(Database& db, const query::Query& q, const Row& params);

}  // namespace tandem::ivm
