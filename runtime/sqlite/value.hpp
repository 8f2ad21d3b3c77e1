// A SQLite value that keeps its storage class (NULL, INTEGER, REAL, TEXT, BLOB), and the three
// orders Tandem needs over it:
//   - compare_sqlite: SQLite's own ordering and equality with BINARY collation (ORDER BY, =, <,
//     GROUP BY, DISTINCT): NULL < numbers < TEXT < BLOB, INTEGER and REAL compared as numbers;
//   - compare_crdt: the merge tie-break of crdt-semantics.md: INTEGER > REAL > TEXT > BLOB > NULL,
//     then numerically or bytewise; a total order (REAL ties broken by bit pattern, so -0.0 and
//     0.0 are distinct and replicas cannot keep different ones);
//   - identical: same storage class and same value, bit for bit. This is what "the value
//     actually changed" means for local writes (stricter than SQLite's IS, which holds 1 IS 1.0;
//     cr-sqlite's triggers use IS and so never replicate an update from 1 to 1.0).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tandem {

class Value {
 public:
  enum class Type : uint8_t { null = 0, integer = 1, real = 2, text = 3, blob = 4 };

  Value() = default;  // NULL
  static Value Integer(int64_t v) { Value x; x.type_ = Type::integer; x.i_ = v; return x; }
  static Value Real(double v) { Value x; x.type_ = Type::real; x.r_ = v; return x; }
  static Value Text(std::string v) { Value x; x.type_ = Type::text; x.s_ = std::move(v); return x; }
  static Value Blob(std::string bytes) { Value x; x.type_ = Type::blob; x.s_ = std::move(bytes); return x; }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::null; }
  bool is_integer() const { return type_ == Type::integer; }
  bool is_real() const { return type_ == Type::real; }
  bool is_numeric() const { return type_ == Type::integer || type_ == Type::real; }
  bool is_text() const { return type_ == Type::text; }
  bool is_blob() const { return type_ == Type::blob; }

  int64_t integer() const { return i_; }           // only for INTEGER
  double real() const { return r_; }               // only for REAL
  const std::string& bytes() const { return s_; }  // TEXT or BLOB content
  // The number as a double (INTEGER converted); 0 for other classes.
  double as_double() const { return type_ == Type::integer ? static_cast<double>(i_) : type_ == Type::real ? r_ : 0.0; }

  // Rough heap + inline footprint, for memory accounting of views.
  size_t footprint() const { return sizeof(Value) + (s_.capacity() > 15 ? s_.capacity() : 0); }

  // A readable rendering for messages and logs: 1, 2.5, 'text', X'0A', NULL.
  std::string to_sql_literal() const;

 private:
  Type type_ = Type::null;
  union {
    int64_t i_ = 0;
    double r_;
  };
  std::string s_;
};

using Row = std::vector<Value>;

// SQLite's ordering with BINARY collation; negative, zero or positive.
int compare_sqlite(const Value& a, const Value& b);
// INTEGER vs REAL exactly as SQLite compares them (no precision loss beyond 2^53).
int compare_integer_real(int64_t i, double r);
// The merge tie-break order of crdt-semantics.md (total).
int compare_crdt(const Value& a, const Value& b);
bool identical(const Value& a, const Value& b);
bool identical(const Row& a, const Row& b);
// A hash consistent with compare_sqlite(a, b) == 0 (so 1 and 1.0 hash alike).
size_t hash_sqlite(const Value& v);
// A hash consistent with identical().
size_t hash_identical(const Value& v);
size_t hash_identical(const Row& row);

const char* type_name(Value::Type t);  // "integer", "real", "text", "blob", "null"

struct IdenticalRowHash {
  size_t operator()(const Row& r) const { return hash_identical(r); }
};
struct IdenticalRowEq {
  bool operator()(const Row& a, const Row& b) const { return identical(a, b); }
};

}  // namespace tandem
