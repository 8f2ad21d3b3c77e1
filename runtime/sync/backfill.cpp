#include "runtime/sync/backfill.hpp"

#include <set>
#include <utility>

namespace tandem::sync_backfill {

std::string covered_note_key(const SiteId& site) { return "sync_columns_" + site_hex(site); }

std::string encode_columns(const DeclaredColumns& columns) {
  std::string out;
  for (const auto& [table, cols] : columns) {
    out += table;
    for (const auto& c : cols) out += "\t" + c;
    out += "\n";
  }
  return out;
}

std::optional<DeclaredColumns> decode_columns(const std::string& text) {
  DeclaredColumns out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    if (end == std::string::npos) return std::nullopt;  // every line ends with a newline
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    size_t field = 0;
    std::string table;
    bool first = true;
    while (field <= line.size()) {
      size_t tab = line.find('\t', field);
      if (tab == std::string::npos) tab = line.size();
      std::string name = line.substr(field, tab - field);
      if (name.empty()) return std::nullopt;
      if (first) {
        table = name;
        if (out.count(table)) return std::nullopt;
        out[table];
        first = false;
      } else {
        out[table].insert(name);
      }
      field = tab + 1;
    }
  }
  return out;
}

Plan plan(const DeclaredColumns& declared, const std::optional<DeclaredColumns>& covered, int64_t from) {
  Plan p;
  if (declared.empty()) return p;
  if (from <= 0) {
    // The ordinary stream from version 0 carries every change of what it declares.
    if (covered != declared) p.record_now = declared;
    return p;
  }
  DeclaredColumns still;  // declared and covered
  for (const auto& [table, cols] : declared) {
    auto known = covered ? covered->find(table) : DeclaredColumns::const_iterator{};
    if (!covered || known == covered->end()) {
      p.backfill[table];  // whole table
      continue;
    }
    auto& kept = still[table];
    std::set<std::string> missing;
    for (const auto& c : cols) {
      if (known->second.count(c)) kept.insert(c);
      else missing.insert(c);
    }
    if (!missing.empty()) p.backfill[table] = std::move(missing);
  }
  // Columns covered but not declared now are not forwarded in this session, so the cursor
  // moves past their changes: they stop being covered before the first forward.
  if (covered && still != *covered) p.record_now = still;
  return p;
}

}  // namespace tandem::sync_backfill
