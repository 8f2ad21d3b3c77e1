#include "runtime/ivm/sqlite_semantics.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace tandem::ivm {
namespace {

constexpr int64_t kMinInt = std::numeric_limits<int64_t>::min();
constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool contains_ci(const std::string& hay, const char* needle) {
  size_t n = std::strlen(needle);
  if (hay.size() < n) return false;
  for (size_t i = 0; i + n <= hay.size(); ++i) {
    size_t k = 0;
    while (k < n && std::toupper(static_cast<unsigned char>(hay[i + k])) == needle[k]) ++k;
    if (k == n) return true;
  }
  return false;
}

// sqlite3RealToI64 then the range check of sqlite3VdbeIntegerAffinity.
bool real_is_exact_int(double r, int64_t* out) {
  if (!(r > -9223372036854775808.0 && r < 9223372036854775808.0)) return false;
  auto i = static_cast<int64_t>(r);
  if (static_cast<double>(i) != r) return false;
  if (i == kMinInt || i == kMaxInt) return false;
  *out = i;
  return true;
}

// doubleToInt64 (vdbemem.c): saturating conversion.
int64_t double_to_int64(double r) {
  if (std::isnan(r)) return 0;
  if (r <= -9223372036854775808.0) return kMinInt;
  if (r >= 9223372036854775807.0) return kMaxInt;
  return static_cast<int64_t>(r);
}

// Text as SQLite's C routines see it: they stop at the first NUL byte.
std::string_view c_string_view(const std::string& s) {
  size_t n = s.find('\0');
  return std::string_view(s.data(), n == std::string::npos ? s.size() : n);
}

// applyNumericAffinity(pRec, bTryForInt) on a TEXT value: true when converted.
bool numeric_from_text(const std::string& text, bool try_for_int, Value* out) {
  double r = 0;
  int rc = sqlite_atof(text, &r);
  if (rc <= 0) return false;
  if (rc == 1) {
    // alsoAnInt: a pure integer literal that fits stays an INTEGER.
    int64_t i;
    if (sqlite_atoi64(text, &i) == 0) { *out = Value::Integer(i); return true; }
  }
  int64_t i;
  if (try_for_int && real_is_exact_int(r, &i)) *out = Value::Integer(i);
  else *out = Value::Real(r);
  return true;
}

// computeNumericType (vdbe.c) for TEXT/BLOB operands of arithmetic.
Value numeric_operand(const Value& v) {
  if (v.is_integer() || v.is_real() || v.is_null()) return v;
  std::string_view text = c_string_view(v.bytes());
  double r = 0;
  int rc = sqlite_atof(text, &r);
  int64_t ix = 0;
  if (rc <= 0) {
    if (rc == 0 && sqlite_atoi64(text, &ix) <= 1) return Value::Integer(ix);
    return Value::Real(r);
  }
  if (rc == 1 && sqlite_atoi64(text, &ix) == 0) return Value::Integer(ix);
  return Value::Real(r);
}

bool add_overflows(int64_t a, int64_t b, int64_t* out) { return __builtin_add_overflow(a, b, out); }
bool sub_overflows(int64_t a, int64_t b, int64_t* out) { return __builtin_sub_overflow(a, b, out); }
bool mul_overflows(int64_t a, int64_t b, int64_t* out) { return __builtin_mul_overflow(a, b, out); }

// ---- LIKE ----

const unsigned char kUtf8Trans1[] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x00, 0x01, 0x02, 0x03, 0x00, 0x01, 0x00, 0x00,
};

// sqlite3Utf8Read over a NUL-terminated buffer.
uint32_t utf8_read(const unsigned char** pz) {
  uint32_t c = *((*pz)++);
  if (c >= 0xc0) {
    c = kUtf8Trans1[c - 0xc0];
    while ((**pz & 0xc0) == 0x80) c = (c << 6) + (0x3f & *((*pz)++));
    if (c < 0x80 || (c & 0xFFFFF800) == 0xD800 || (c & 0xFFFFFFFE) == 0xFFFE) c = 0xFFFD;
  }
  return c;
}
uint32_t utf8_read_fast(const unsigned char** pz) {
  if (**pz < 0x80) return *((*pz)++);
  return utf8_read(pz);
}

uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }
uint32_t ascii_upper(uint32_t c) { return (c >= 'a' && c <= 'z') ? c - 32 : c; }

enum { kMatch = 0, kNoMatch = 1, kNoWildcardMatch = 2 };

// patternCompare (func.c) for LIKE without ESCAPE: '%' matches any run, '_' one character.
int pattern_compare(const unsigned char* pattern, const unsigned char* string) {
  uint32_t c, c2;
  while ((c = utf8_read_fast(&pattern)) != 0) {
    if (c == '%') {
      while ((c = utf8_read_fast(&pattern)) == '%' || c == '_') {
        if (c == '_' && utf8_read(&string) == 0) return kNoWildcardMatch;
      }
      if (c == 0) return kMatch;
      if (c < 0x80) {
        char stop[3];
        stop[0] = static_cast<char>(ascii_upper(c));
        stop[1] = static_cast<char>(ascii_lower(c));
        stop[2] = 0;
        for (;;) {
          string += std::strcspn(reinterpret_cast<const char*>(string), stop);
          if (string[0] == 0) break;
          ++string;
          int m = pattern_compare(pattern, string);
          if (m != kNoMatch) return m;
        }
      } else {
        while ((c2 = utf8_read_fast(&string)) != 0) {
          if (c2 != c) continue;
          int m = pattern_compare(pattern, string);
          if (m != kNoMatch) return m;
        }
      }
      return kNoWildcardMatch;
    }
    c2 = utf8_read_fast(&string);
    if (c == c2) continue;
    if (ascii_lower(c) == ascii_lower(c2) && c < 0x80 && c2 < 0x80) continue;
    if (c == '_' && c2 != 0) continue;
    return kNoMatch;
  }
  return *string == 0 ? kMatch : kNoMatch;
}

std::string text_of(const Value& v) {
  if (v.is_text() || v.is_blob()) return std::string(c_string_view(v.bytes()));
  return number_to_text(v);
}

}  // namespace

Affinity affinity_of_declared_type(const std::string& t) {
  if (contains_ci(t, "INT")) return Affinity::integer;
  if (contains_ci(t, "CHAR") || contains_ci(t, "CLOB") || contains_ci(t, "TEXT")) return Affinity::text;
  if (t.empty() || contains_ci(t, "BLOB")) return Affinity::blob;
  if (contains_ci(t, "REAL") || contains_ci(t, "FLOA") || contains_ci(t, "DOUB")) return Affinity::real;
  return Affinity::numeric;
}

bool is_numeric_affinity(Affinity a) {
  return a == Affinity::numeric || a == Affinity::integer || a == Affinity::real;
}

Affinity comparison_affinity(Affinity left, Affinity right) {
  if (left != Affinity::none && right != Affinity::none) {
    if (is_numeric_affinity(left) || is_numeric_affinity(right)) return Affinity::numeric;
    return Affinity::blob;
  }
  return left == Affinity::none ? right : left;
}

Value apply_storage_affinity(const Value& v, Affinity a) {
  if (is_numeric_affinity(a)) {
    if (v.is_text()) {
      Value out;
      if (numeric_from_text(v.bytes(), true, &out)) {
        if (a == Affinity::real && out.is_integer()) return Value::Real(static_cast<double>(out.integer()));
        return out;
      }
      return v;
    }
    if (v.is_real()) {
      if (a == Affinity::real) return v;
      int64_t i;
      if (real_is_exact_int(v.real(), &i)) return Value::Integer(i);
      return v;
    }
    if (v.is_integer() && a == Affinity::real) return Value::Real(static_cast<double>(v.integer()));
    return v;
  }
  if (a == Affinity::text && v.is_numeric()) return Value::Text(number_to_text(v));
  return v;
}

bool apply_comparison_affinity(Value& v, Affinity a) {
  if (is_numeric_affinity(a)) {
    if (!v.is_text()) return false;
    Value out;
    if (!numeric_from_text(v.bytes(), false, &out)) return false;
    v = std::move(out);
    return true;
  }
  if (a == Affinity::text && v.is_numeric()) {
    v = Value::Text(number_to_text(v));
    return true;
  }
  return false;
}

int sqlite_atof(std::string_view z, double* value) {
  size_t i = 0, n = z.size();
  *value = 0.0;
  while (i < n && is_space(z[i])) ++i;
  size_t start = i;
  if (i < n && (z[i] == '+' || z[i] == '-')) ++i;
  size_t digits = 0;
  int type = 1;
  while (i < n && is_digit(z[i])) { ++i; ++digits; }
  size_t end_mantissa = i;
  if (i < n && z[i] == '.') {
    ++i;
    type = 2;
    while (i < n && is_digit(z[i])) { ++i; ++digits; }
    end_mantissa = i;
  }
  if (digits == 0) return 0;
  size_t end_number = end_mantissa;
  bool exponent_ok = true;
  if (i < n && (z[i] == 'e' || z[i] == 'E')) {
    size_t j = i + 1;
    if (j < n && (z[j] == '+' || z[j] == '-')) ++j;
    if (j < n && is_digit(z[j])) {
      while (j < n && is_digit(z[j])) ++j;
      end_number = j;
      type = 2;
      i = j;
    } else {
      exponent_ok = false;
      i = end_mantissa;
    }
  }
  std::string number(z.substr(start, end_number - start));
  *value = std::strtod(number.c_str(), nullptr);
  size_t k = end_number;
  while (k < n && is_space(z[k])) ++k;
  if (k == n && exponent_ok) return type;
  // Not a pure number: -1 when the valid prefix had a decimal point or exponent.
  return type >= 2 ? -1 : 0;
}

int sqlite_atoi64(std::string_view z, int64_t* value) {
  size_t i = 0, n = z.size();
  while (i < n && is_space(z[i])) ++i;
  bool neg = false;
  if (i < n && (z[i] == '-' || z[i] == '+')) { neg = z[i] == '-'; ++i; }
  while (i < n && z[i] == '0') ++i;
  size_t s = i;
  uint128 u = 0;
  while (i < n && is_digit(z[i]) && i - s < 25) { u = u * 10 + static_cast<unsigned>(z[i] - '0'); ++i; }
  size_t digits_end = i;
  while (i < n && is_digit(z[i])) ++i;  // absurdly long: overflow anyway
  bool extra = false;
  for (size_t k = i; k < n; ++k)
    if (!is_space(z[k])) { extra = true; break; }
  const uint128 limit = static_cast<uint128>(kMaxInt) + 1;
  bool overflow = (i != digits_end) || u > limit || (u == limit && !neg);
  if (overflow) {
    *value = neg ? kMinInt : kMaxInt;
    return 2;
  }
  if (neg) *value = u == limit ? kMinInt : -static_cast<int64_t>(u);
  else *value = static_cast<int64_t>(u);
  return extra ? 1 : 0;
}

double real_value(const Value& v) {
  switch (v.type()) {
    case Value::Type::integer: return static_cast<double>(v.integer());
    case Value::Type::real: return v.real();
    case Value::Type::text:
    case Value::Type::blob: {
      double r = 0;
      sqlite_atof(c_string_view(v.bytes()), &r);
      return r;
    }
    case Value::Type::null: return 0.0;
  }
  return 0.0;
}

int64_t integer_value(const Value& v) {
  switch (v.type()) {
    case Value::Type::integer: return v.integer();
    case Value::Type::real: return double_to_int64(v.real());
    case Value::Type::text:
    case Value::Type::blob: {
      int64_t i = 0;
      sqlite_atoi64(c_string_view(v.bytes()), &i);
      return i;
    }
    case Value::Type::null: return 0;
  }
  return 0;
}

std::optional<bool> truth(const Value& v) {
  if (v.is_null()) return std::nullopt;
  if (v.is_integer()) return v.integer() != 0;
  return real_value(v) != 0.0;
}

std::string number_to_text(const Value& v) {
  if (v.is_integer()) return std::to_string(v.integer());
  if (!v.is_real()) return v.bytes();
  double r = v.real();
  if (std::isinf(r)) return r > 0 ? "Inf" : "-Inf";
  if (r == 0.0) return "0.0";  // SQLite's printf drops the sign of -0.0
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.15g", r);
  std::string s = buf;
  // The '!' flag: always a decimal point in the mantissa.
  size_t e = s.find('e');
  std::string mantissa = e == std::string::npos ? s : s.substr(0, e);
  if (mantissa.find('.') == std::string::npos) {
    mantissa += ".0";
    s = e == std::string::npos ? mantissa : mantissa + s.substr(e);
  }
  return s;
}

Value arithmetic(ArithOp op, const Value& left_in, const Value& right_in) {
  Value a = numeric_operand(left_in);   // P2 in SQLite's opcode: the left operand
  Value b = numeric_operand(right_in);  // P1: the right operand
  if (a.is_integer() && b.is_integer()) {
    int64_t x = a.integer(), y = b.integer(), r;
    switch (op) {
      case ArithOp::add: if (!add_overflows(x, y, &r)) return Value::Integer(r); break;
      case ArithOp::sub: if (!sub_overflows(x, y, &r)) return Value::Integer(r); break;
      case ArithOp::mul: if (!mul_overflows(x, y, &r)) return Value::Integer(r); break;
      case ArithOp::div:
        if (y == 0) return Value();
        if (y == -1 && x == kMinInt) break;
        return Value::Integer(x / y);
      case ArithOp::mod:
        if (y == 0) return Value();
        if (y == -1) y = 1;
        return Value::Integer(x % y);
    }
  } else if (a.is_null() || b.is_null()) {
    return Value();
  }
  double ra = real_value(a), rb = real_value(b), r = 0;
  switch (op) {
    case ArithOp::add: r = ra + rb; break;
    case ArithOp::sub: r = ra - rb; break;
    case ArithOp::mul: r = ra * rb; break;
    case ArithOp::div:
      if (rb == 0.0) return Value();
      r = ra / rb;
      break;
    case ArithOp::mod: {
      // OP_Remainder converts the original operands (TEXT '1e1' is 1 here, not 10).
      int64_t ia = integer_value(left_in), ib = integer_value(right_in);
      if (ib == 0) return Value();
      if (ib == -1) ib = 1;
      r = static_cast<double>(ia % ib);
      break;
    }
  }
  if (std::isnan(r)) return Value();
  return Value::Real(r);
}

Value like(const Value& string, const Value& pattern) {
  if (string.is_blob() || pattern.is_blob()) return Value::Integer(0);
  if (string.is_null() || pattern.is_null()) return Value();
  std::string s = text_of(string), p = text_of(pattern);
  if (p.size() > 50000) return Value();  // SQLite raises "LIKE or GLOB pattern too complex"
  int m = pattern_compare(reinterpret_cast<const unsigned char*>(p.c_str()),
                          reinterpret_cast<const unsigned char*>(s.c_str()));
  return Value::Integer(m == kMatch ? 1 : 0);
}

}  // namespace tandem::ivm
