#include "runtime/sync/server_lineage.hpp"

#include <sstream>
#include <utility>
#include <vector>

namespace tandem::sync_lineage {

std::string encode_sites(const std::set<SiteId>& sites) {
  std::string out;
  for (const auto& s : sites) {
    if (!out.empty()) out += ',';
    out += site_hex(s);
  }
  return out;
}

std::set<SiteId> decode_sites(const std::string& text) {
  std::set<SiteId> out;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (auto site = site_from_hex(item)) out.insert(*site);
  return out;
}

Result<std::set<SiteId>> former_sites(Store& store) {
  TANDEM_ASSIGN_OR_RETURN(auto note, store.note(kFormerSitesNote));
  if (!note) return std::set<SiteId>{};
  return decode_sites(*note);
}

Result<SiteId> start_new_lineage(Store& store, const std::set<SiteId>& also_former) {
  TANDEM_ASSIGN_OR_RETURN(auto former, former_sites(store));
  former.insert(also_former.begin(), also_former.end());
  former.insert(store.site_id());
  TANDEM_ASSIGN_OR_RETURN(auto peers, store.peers());
  // take_new_site is the client's operation: it resets every peer's acked (no peer holds a
  // change of a new client site). A server file's acked values are forward cursors in its own
  // version space, which the restore keeps, so they are put back.
  TANDEM_ASSIGN_OR_RETURN(SiteId fresh, store.take_new_site(store.db_version()));
  std::vector<std::pair<SiteId, int64_t>> acks;
  for (const auto& p : peers)
    if (p.cursor.acked > 0) acks.emplace_back(p.site, p.cursor.acked);
  TANDEM_RETURN_IF_ERROR(store.record_peer_acks(acks));
  former.erase(fresh);
  TANDEM_RETURN_IF_ERROR(store.put_notes({{kFormerSitesNote, encode_sites(former)}}));
  TANDEM_RETURN_IF_ERROR(store.sync());
  return fresh;
}

}  // namespace tandem::sync_lineage
