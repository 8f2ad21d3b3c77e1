#include "runtime/ivm/operators/rows.hpp"

#include <cmath>
#include <cstring>

namespace tandem::ivm {

void encode_identical(const Value& v, std::string* out) {
  auto put64 = [out](uint64_t u) {
    for (int s = 56; s >= 0; s -= 8) out->push_back(static_cast<char>((u >> s) & 0xff));
  };
  switch (v.type()) {
    case Value::Type::null: out->push_back('N'); return;
    case Value::Type::integer: out->push_back('I'); put64(static_cast<uint64_t>(v.integer())); return;
    case Value::Type::real: {
      out->push_back('R');
      uint64_t u;
      double d = v.real();
      std::memcpy(&u, &d, 8);
      put64(u);
      return;
    }
    case Value::Type::text:
    case Value::Type::blob:
      out->push_back(v.is_text() ? 'T' : 'B');
      put64(v.bytes().size());
      out->append(v.bytes());
      return;
  }
}

void encode_canonical(const Value& v, std::string* out) {
  if (v.is_real()) {
    double d = v.real();
    if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && std::trunc(d) == d) {
      encode_identical(Value::Integer(static_cast<int64_t>(d)), out);
      return;
    }
  }
  encode_identical(v, out);
}

size_t row_bytes(const Row& r) {
  size_t n = sizeof(Row) + r.capacity() * sizeof(Value);
  for (const auto& v : r) n += v.footprint() - sizeof(Value);
  return n;
}

bool same_row(const std::optional<Row>& a, const std::optional<Row>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || identical(*a, *b);
}

std::string pk_key(const TableSchema& t, const Row& row) {
  std::string k;
  for (int c : t.pk) encode_canonical(row[static_cast<size_t>(c)], &k);
  return k;
}

}  // namespace tandem::ivm
