// A SQLite VFS that wraps the default one and fails on demand: for tests that inject I/O
// errors into real writes (SQLite's own test approach) instead of hoping they never happen.
//
// Register once per process with register_fault_vfs(); open databases with
// OpenOptions::vfs = kFaultVfsName. Faults are process-wide and thread-safe.
#pragma once

#include <cstdint>

namespace tandem {

inline constexpr const char* kFaultVfsName = "tandem-fault";

// Registers the VFS (idempotent). Returns false if SQLite refused it.
bool register_fault_vfs();

// After `operations` more successful writes or syncs, every write and sync fails with
// SQLITE_IOERR until clear_faults(). A negative count disarms.
void fail_after(int64_t operations);
void clear_faults();
// Writes and syncs seen since the last fail_after/clear_faults (for choosing fault points).
int64_t fault_vfs_operations();
// Successful syncs (fsync/fdatasync of any file) since the last fail_after/clear_faults: lets
// tests check what a commit made durable.
int64_t fault_vfs_syncs();

}  // namespace tandem
