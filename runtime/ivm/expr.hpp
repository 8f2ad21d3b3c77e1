// Compiled expressions of a bound query, evaluated with SQLite's semantics
// (sqlite_semantics.hpp). Two evaluation contexts exist:
//   - a tuple: one row per FROM occurrence (nullptr for a NULL-extended LEFT JOIN side);
//   - a group: the group-by key values and the aggregate values of one group.
// Parameters are bound at compile time and become constants (they have no affinity, like
// literals). Evaluation never allocates for integer/real/NULL results.
#pragma once

#include <memory>
#include <vector>

#include "runtime/ivm/sqlite_semantics.hpp"
#include "runtime/sqlite/value.hpp"

namespace tandem::ivm {

struct EvalContext {
  const Row* const* rows = nullptr;  // tuple context: rows[occurrence]
  const Value* group_keys = nullptr; // group context
  const Value* aggregates = nullptr; // group context
};

struct CExpr {
  enum class Kind : uint8_t {
    column, constant, group_key, aggregate, not_, negate, plus, compare, and_, or_, arith,
    is_null, in_list, between, like
  };
  enum class Cmp : uint8_t { eq, ne, lt, le, gt, ge };

  Kind kind = Kind::constant;
  Cmp cmp = Cmp::eq;
  ArithOp arith = ArithOp::add;
  bool negated = false;       // IS NOT NULL, NOT IN, NOT BETWEEN, NOT LIKE
  int occurrence = -1;        // column: FROM occurrence
  int column = -1;            // column: index in the table's columns; group_key/aggregate: slot
  Affinity affinity = Affinity::none;  // the expression's own affinity (columns, group keys)
  Affinity cmp_affinity = Affinity::none;  // compare/in_list: the affinity applied to operands
  Value constant;
  std::string sql;            // aggregate (until bound to a slot): its argument as SQL
  std::vector<CExpr> children;

  Value eval(const EvalContext& ctx) const;
  // True when the expression's value is true (WHERE/ON/HAVING semantics: NULL is false).
  bool test(const EvalContext& ctx) const;
  // Structural equality (resolved columns, same constants), used to match GROUP BY terms.
  bool same_as(const CExpr& other) const;
  // Occurrences referenced (bit mask; at most 64 occurrences).
  uint64_t occurrences() const;
  bool has_aggregate() const;
};

}  // namespace tandem::ivm
