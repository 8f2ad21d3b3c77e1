// The vocabulary the IVM operators share: a joined tuple, a result entry with its sort key, the
// order entries sort in, and the canonical keys of rows. Stateless; every operator includes it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <ext/pb_ds/assoc_container.hpp>
#include <ext/pb_ds/tree_policy.hpp>

#include "runtime/ivm/plan.hpp"
#include "runtime/ivm/view.hpp"

namespace tandem::ivm {

// One row per occurrence of the FROM tree; nullptr for a NULL-extended (LEFT JOIN) occurrence.
// The rows are borrowed from the caller for the duration of one call.
using Tuple = std::vector<const Row*>;

// A result row with its sort key (ORDER BY values followed by the tie-break values).
struct Entry {
  std::string key;
  Row row;
  Row order;
};

struct EntryLess {
  std::vector<bool> desc;  // per ORDER BY value; tie-break values ascend
  bool operator()(const Entry* a, const Entry* b) const {
    size_t n = std::min(a->order.size(), b->order.size());
    for (size_t i = 0; i < n; ++i) {
      int c = compare_sqlite(a->order[i], b->order[i]);
      if (c != 0) return i < desc.size() && desc[i] ? c > 0 : c < 0;
    }
    return a->key < b->key;
  }
};

// An ordered index with ranks in O(log n) (libstdc++'s policy-based red-black tree), so that
// ordered views report positions without walking the result.
using OrderTree = __gnu_pbds::tree<Entry*, __gnu_pbds::null_type, EntryLess, __gnu_pbds::rb_tree_tag,
                                   __gnu_pbds::tree_order_statistics_node_update>;

struct SqliteLess {
  bool operator()(const Value& a, const Value& b) const { return compare_sqlite(a, b) < 0; }
};

// Approximate heap bytes of a row (for memory_bytes()).
size_t row_bytes(const Row& r);
// Both absent, or both present and identical().
bool same_row(const std::optional<Row>& a, const std::optional<Row>& b);
// The canonical key of a row of `t` (its primary key values, encode_canonical).
std::string pk_key(const TableSchema& t, const Row& row);
// The result keeps an order (ORDER BY, or a LIMIT/OFFSET window over an unordered query).
inline bool internally_ordered(const Plan& p) { return p.ordered() || p.limit >= 0 || p.offset > 0; }

}  // namespace tandem::ivm
