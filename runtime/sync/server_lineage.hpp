// A server file's lineage: the site ids the file had before restores.
//
// A restored user file holds an older history than its clients have seen: their cursors
// (server db_versions they merged) may name versions the restored file will re-use for other
// changes. So a restore gives the file a new site id: a hello naming the old id is then not
// this server's, and its cursor is not trusted (forwards restart from the file's peer table).
// What a device says the server acknowledged of ITS changes (hello.acked_db_version) is in
// the device's own version space and stays comparable across the restore: the restored file
// holds a prefix of what the old file acknowledged. The old ids are kept in a store note so
// that ChannelCore::honours_acked_of can keep counting it (without it every device would be
// refused with SITE_CONFLICT: the file holds changes of its site beyond an acked taken as 0).
#pragma once

#include <set>
#include <string>

#include "runtime/common/status.hpp"
#include "runtime/store/store.hpp"

namespace tandem::sync_lineage {

// Store note holding the former site ids, comma-separated upper-case hex.
inline constexpr const char* kFormerSitesNote = "sync_former_server_sites";

std::string encode_sites(const std::set<SiteId>& sites);
// Entries that are not 32 hex digits are skipped (a damaged note honours fewer ids, which
// costs devices a new site id, never a missed change).
std::set<SiteId> decode_sites(const std::string& text);

// The former site ids recorded in `store` (empty when it was never restored).
Result<std::set<SiteId>> former_sites(Store& store);

// Makes `store` (a server file just restored, not open elsewhere) a new lineage: a new random
// site id, the current and `also_former` ids added to the former ones, every peer's cursor
// kept (the file's versions keep their meaning: only clients' knowledge of them is suspect),
// and made durable. Returns the new site id.
Result<SiteId> start_new_lineage(Store& store, const std::set<SiteId>& also_former);

}  // namespace tandem::sync_lineage
