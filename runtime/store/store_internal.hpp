// Internal to Tandem: the Store's SQLite connection, for code that must act below the
// Store's API (tests that inject faults through an authorizer). Applications and the roles
// use the Store's API; a statement run here bypasses its authorizer's rules, its clocks and
// its change log, so it must not write replicated tables.
#pragma once

#include "runtime/store/store.hpp"

namespace tandem {

// The store's one read-write connection; valid while the store lives. Same thread as the store.
Database& store_connection(Store& store);

}  // namespace tandem
