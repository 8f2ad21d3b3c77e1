#include "runtime/store/store_format.hpp"

#include <cstring>

namespace tandem {
namespace {

constexpr uint8_t kUniform = 1;
constexpr uint8_t kGeneral = 2;
constexpr uint8_t kCountedUniform = 3;
constexpr uint8_t kCountedGeneral = 4;

enum KeyTag : uint8_t { kNull = 0, kInteger = 1, kReal = 2, kText = 3, kBlob = 4 };

void put_u64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}

bool get_u64(std::string_view& in, uint64_t* v) {
  if (in.size() < 8) return false;
  uint64_t x = 0;
  for (int i = 0; i < 8; ++i) x = (x << 8) | static_cast<uint8_t>(in[static_cast<size_t>(i)]);
  in.remove_prefix(8);
  *v = x;
  return true;
}

bool get_clock(std::string_view& in, CellClock* c) {
  uint64_t dbv, site, seq;
  if (!get_varint(in, &dbv) || !get_varint(in, &site) || !get_varint(in, &seq)) return false;
  c->db_version = static_cast<int64_t>(dbv);
  c->site = static_cast<int64_t>(site);
  c->seq = static_cast<int64_t>(seq);
  return true;
}

void put_clock(std::string& out, const CellClock& c) {
  put_varint(out, static_cast<uint64_t>(c.db_version));
  put_varint(out, static_cast<uint64_t>(c.site));
  put_varint(out, static_cast<uint64_t>(c.seq));
}

Status corrupt(const char* what) { return Status::Internal(std::string("corrupt Tandem record: ") + what); }

}  // namespace

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool get_varint(std::string_view& in, uint64_t* v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    auto b = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    x |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      *v = x;
      return true;
    }
  }
  return false;
}

std::string encode_clock(const RowClock& clock, size_t base_cells) {
  std::string out;
  encode_clock(clock, base_cells, &out);
  return out;
}

void encode_clock(const RowClock& clock, size_t base_cells, std::string* buffer) {
  std::string& out = *buffer;
  out.clear();
  const bool counted = clock.cells.size() != base_cells;
  bool uniform = !clock.sentinel.present() && clock.cl == 1 && !clock.cells.empty();
  if (uniform) {
    const CellClock& first = clock.cells.front();
    for (size_t i = 0; i < clock.cells.size() && uniform; ++i) {
      const CellClock& c = clock.cells[i];
      uniform = c.col_version == 1 && c.db_version == first.db_version && c.site == first.site &&
                c.seq == first.seq + static_cast<int64_t>(i);
    }
  }
  if (uniform) {
    out.push_back(static_cast<char>(counted ? kCountedUniform : kUniform));
    if (counted) put_varint(out, clock.cells.size());
    put_clock(out, clock.cells.front());
    return;
  }
  out.push_back(static_cast<char>(counted ? kCountedGeneral : kGeneral));
  if (counted) put_varint(out, clock.cells.size());
  for (const CellClock& c : clock.cells) {
    if (!c.present()) {
      put_varint(out, 0);
      continue;
    }
    put_varint(out, static_cast<uint64_t>(c.col_version) + 1);
    put_clock(out, c);
  }
  if (clock.sentinel.present()) {
    put_varint(out, 1);
    put_clock(out, clock.sentinel);
  } else {
    put_varint(out, 0);
  }
}

Status decode_clock(std::string_view in, size_t cells, size_t base_cells, RowClock* clock) {
  clock->cells.assign(cells, CellClock{});
  clock->sentinel = CellClock{};
  if (in.empty()) return corrupt("empty clock");
  auto tag = static_cast<uint8_t>(in.front());
  in.remove_prefix(1);
  if (tag != kUniform && tag != kGeneral && tag != kCountedUniform && tag != kCountedGeneral)
    return corrupt("unknown clock tag");
  // The cells this record holds: the columns that existed when it was written. Later ones
  // stay absent (never written here).
  size_t held = base_cells;
  if (tag == kCountedUniform || tag == kCountedGeneral) {
    uint64_t n;
    if (!get_varint(in, &n)) return corrupt("cell count");
    held = static_cast<size_t>(n);
  }
  if (held > cells) return corrupt("more cells than the table has value columns");
  if (tag == kUniform || tag == kCountedUniform) {
    CellClock first;
    if (!get_clock(in, &first) || !in.empty()) return corrupt("uniform clock");
    for (size_t i = 0; i < held; ++i) {
      CellClock& c = clock->cells[i];
      c = first;
      c.col_version = 1;
      c.seq = first.seq + static_cast<int64_t>(i);
    }
    return Status::Ok();
  }
  for (size_t i = 0; i < held; ++i) {
    uint64_t cv1;
    if (!get_varint(in, &cv1)) return corrupt("cell clock");
    if (cv1 == 0) continue;
    CellClock& c = clock->cells[i];
    c.col_version = static_cast<int64_t>(cv1 - 1);
    if (!get_clock(in, &c)) return corrupt("cell clock");
  }
  uint64_t has_sentinel;
  if (!get_varint(in, &has_sentinel)) return corrupt("sentinel flag");
  if (has_sentinel) {
    if (!get_clock(in, &clock->sentinel)) return corrupt("sentinel clock");
    clock->sentinel.col_version = clock->cl;
  }
  if (!in.empty()) return corrupt("trailing bytes in clock");
  return Status::Ok();
}

std::string encode_key(const Row& pk) {
  std::string out;
  for (const Value& v : pk) {
    switch (v.type()) {
      case Value::Type::null: out.push_back(static_cast<char>(kNull)); break;
      case Value::Type::integer:
        out.push_back(static_cast<char>(kInteger));
        put_u64(out, static_cast<uint64_t>(v.integer()));
        break;
      case Value::Type::real: {
        out.push_back(static_cast<char>(kReal));
        uint64_t bits;
        double d = v.real();
        std::memcpy(&bits, &d, sizeof bits);
        put_u64(out, bits);
        break;
      }
      case Value::Type::text:
      case Value::Type::blob:
        out.push_back(static_cast<char>(v.is_text() ? kText : kBlob));
        put_varint(out, v.bytes().size());
        out += v.bytes();
        break;
    }
  }
  return out;
}

Status decode_key(std::string_view in, Row* pk) {
  pk->clear();
  while (!in.empty()) {
    auto tag = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    uint64_t x;
    switch (tag) {
      case kNull: pk->emplace_back(); break;
      case kInteger:
        if (!get_u64(in, &x)) return corrupt("key integer");
        pk->push_back(Value::Integer(static_cast<int64_t>(x)));
        break;
      case kReal: {
        if (!get_u64(in, &x)) return corrupt("key real");
        double d;
        std::memcpy(&d, &x, sizeof d);
        pk->push_back(Value::Real(d));
        break;
      }
      case kText:
      case kBlob: {
        if (!get_varint(in, &x) || x > in.size()) return corrupt("key bytes");
        std::string bytes(in.substr(0, x));
        in.remove_prefix(x);
        pk->push_back(tag == kText ? Value::Text(std::move(bytes)) : Value::Blob(std::move(bytes)));
        break;
      }
      default: return corrupt("key tag");
    }
  }
  return Status::Ok();
}

Value clock_key(bool integer_pk, const Row& pk) {
  if (integer_pk) return pk.front();
  return Value::Blob(encode_key(pk));
}

Status key_values(bool integer_pk, const Value& key, Row* pk) {
  if (integer_pk) {
    pk->assign(1, key);
    return Status::Ok();
  }
  return decode_key(key.bytes(), pk);
}

void append_key(std::string& out, const Value& key) {
  if (key.is_integer()) {
    out.push_back(static_cast<char>(kInteger));
    auto u = static_cast<uint64_t>(key.integer());
    put_varint(out, (u << 1) ^ static_cast<uint64_t>(key.integer() >> 63));  // zigzag
  } else {
    out.push_back(static_cast<char>(kBlob));
    put_varint(out, key.bytes().size());
    out += key.bytes();
  }
}

Status read_keys(std::string_view in, std::vector<Value>* keys) {
  keys->clear();
  while (!in.empty()) {
    auto tag = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    uint64_t x;
    if (!get_varint(in, &x)) return corrupt("changelog key");
    if (tag == kInteger) {
      keys->push_back(Value::Integer(static_cast<int64_t>((x >> 1) ^ (~(x & 1) + 1))));
    } else if (tag == kBlob) {
      if (x > in.size()) return corrupt("changelog key bytes");
      keys->push_back(Value::Blob(std::string(in.substr(0, x))));
      in.remove_prefix(x);
    } else {
      return corrupt("changelog key tag");
    }
  }
  return Status::Ok();
}

}  // namespace tandem
