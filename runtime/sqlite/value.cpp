#include "runtime/sqlite/value.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>

namespace tandem {
namespace {

int compare_bytes(const std::string& a, const std::string& b) {
  size_t n = a.size() < b.size() ? a.size() : b.size();
  int c = n == 0 ? 0 : std::memcmp(a.data(), b.data(), n);
  if (c != 0) return c < 0 ? -1 : 1;
  if (a.size() == b.size()) return 0;
  return a.size() < b.size() ? -1 : 1;
}

// SQLite's sort classes: NULL < numeric < TEXT < BLOB.
int sqlite_rank(Value::Type t) {
  switch (t) {
    case Value::Type::null: return 0;
    case Value::Type::integer:
    case Value::Type::real: return 1;
    case Value::Type::text: return 2;
    case Value::Type::blob: return 3;
  }
  return 0;
}

// crdt-semantics.md: INTEGER > REAL > TEXT > BLOB > NULL.
int crdt_rank(Value::Type t) {
  switch (t) {
    case Value::Type::null: return 0;
    case Value::Type::blob: return 1;
    case Value::Type::text: return 2;
    case Value::Type::real: return 3;
    case Value::Type::integer: return 4;
  }
  return 0;
}

uint64_t double_bits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
}

size_t mix(size_t seed, size_t h) { return seed ^ (h + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2)); }

}  // namespace

const char* type_name(Value::Type t) {
  switch (t) {
    case Value::Type::null: return "null";
    case Value::Type::integer: return "integer";
    case Value::Type::real: return "real";
    case Value::Type::text: return "text";
    case Value::Type::blob: return "blob";
  }
  return "?";
}

int compare_integer_real(int64_t i, double r) {
  if (std::isnan(r)) return 1;  // SQLite never stores NaN (it becomes NULL); order it low anyway.
  if (r < -9223372036854775808.0) return 1;
  if (r >= 9223372036854775808.0) return -1;
  double t = std::trunc(r);
  auto y = static_cast<int64_t>(t);
  if (i < y) return -1;
  if (i > y) return 1;
  if (r > t) return -1;
  if (r < t) return 1;
  return 0;
}

int compare_sqlite(const Value& a, const Value& b) {
  int ra = sqlite_rank(a.type()), rb = sqlite_rank(b.type());
  if (ra != rb) return ra < rb ? -1 : 1;
  switch (a.type()) {
    case Value::Type::null: return 0;
    case Value::Type::integer:
      if (b.is_integer()) return a.integer() < b.integer() ? -1 : a.integer() > b.integer() ? 1 : 0;
      return compare_integer_real(a.integer(), b.real());
    case Value::Type::real:
      if (b.is_integer()) return -compare_integer_real(b.integer(), a.real());
      return a.real() < b.real() ? -1 : a.real() > b.real() ? 1 : 0;
    case Value::Type::text:
    case Value::Type::blob: return compare_bytes(a.bytes(), b.bytes());
  }
  return 0;
}

int compare_crdt(const Value& a, const Value& b) {
  int ra = crdt_rank(a.type()), rb = crdt_rank(b.type());
  if (ra != rb) return ra < rb ? -1 : 1;
  switch (a.type()) {
    case Value::Type::null: return 0;
    case Value::Type::integer: return a.integer() < b.integer() ? -1 : a.integer() > b.integer() ? 1 : 0;
    case Value::Type::real: {
      if (a.real() < b.real()) return -1;
      if (a.real() > b.real()) return 1;
      uint64_t x = double_bits(a.real()), y = double_bits(b.real());
      return x < y ? -1 : x > y ? 1 : 0;
    }
    case Value::Type::text:
    case Value::Type::blob: return compare_bytes(a.bytes(), b.bytes());
  }
  return 0;
}

bool identical(const Value& a, const Value& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Value::Type::null: return true;
    case Value::Type::integer: return a.integer() == b.integer();
    case Value::Type::real: return double_bits(a.real()) == double_bits(b.real());
    case Value::Type::text:
    case Value::Type::blob: return a.bytes() == b.bytes();
  }
  return false;
}

bool identical(const Row& a, const Row& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!identical(a[i], b[i])) return false;
  return true;
}

size_t hash_sqlite(const Value& v) {
  switch (v.type()) {
    case Value::Type::null: return 0x51ed27;
    case Value::Type::integer: {
      auto d = static_cast<double>(v.integer());
      if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && static_cast<int64_t>(d) == v.integer())
        return std::hash<double>()(d);
      return std::hash<int64_t>()(v.integer());
    }
    case Value::Type::real: return std::hash<double>()(v.real() == 0.0 ? 0.0 : v.real());
    case Value::Type::text: return mix(3, std::hash<std::string>()(v.bytes()));
    case Value::Type::blob: return mix(4, std::hash<std::string>()(v.bytes()));
  }
  return 0;
}

size_t hash_identical(const Value& v) {
  switch (v.type()) {
    case Value::Type::null: return 0x51ed27;
    case Value::Type::integer: return mix(1, std::hash<int64_t>()(v.integer()));
    case Value::Type::real: return mix(2, std::hash<uint64_t>()(double_bits(v.real())));
    case Value::Type::text: return mix(3, std::hash<std::string>()(v.bytes()));
    case Value::Type::blob: return mix(4, std::hash<std::string>()(v.bytes()));
  }
  return 0;
}

size_t hash_identical(const Row& row) {
  size_t h = row.size();
  for (const auto& v : row) h = mix(h, hash_identical(v));
  return h;
}

std::string Value::to_sql_literal() const {
  static const char* hex = "0123456789ABCDEF";
  switch (type_) {
    case Type::null: return "NULL";
    case Type::integer: return std::to_string(i_);
    case Type::real: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", r_);
      std::string s = buf;
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
      return s;
    }
    case Type::text: {
      std::string out = "'";
      for (char c : s_) {
        if (c == '\'') out += '\'';
        out += c;
      }
      return out + "'";
    }
    case Type::blob: {
      std::string out = "X'";
      for (unsigned char c : s_) {
        out += hex[c >> 4];
        out += hex[c & 15];
      }
      return out + "'";
    }
  }
  return "NULL";
}

}  // namespace tandem
