#include "runtime/sqlite/fault_vfs.hpp"

#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace tandem {
namespace {

std::atomic<int64_t> g_remaining{-1};  // <0: disarmed
std::atomic<int64_t> g_seen{0};
std::atomic<int64_t> g_syncs{0};
sqlite3_vfs* g_base = nullptr;

// An open file: our io_methods first, then the base VFS's file right after it.
struct FaultFile {
  sqlite3_file base;
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};

bool should_fail() {
  g_seen.fetch_add(1);
  int64_t r = g_remaining.load();
  if (r < 0) return false;
  if (r == 0) return true;
  g_remaining.fetch_sub(1);
  return false;
}

FaultFile* ff(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f); }

int x_close(sqlite3_file* f) { return ff(f)->real()->pMethods ? ff(f)->real()->pMethods->xClose(ff(f)->real()) : SQLITE_OK; }
int x_read(sqlite3_file* f, void* p, int n, sqlite3_int64 off) { return ff(f)->real()->pMethods->xRead(ff(f)->real(), p, n, off); }
int x_write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
  if (should_fail()) return SQLITE_IOERR_WRITE;
  return ff(f)->real()->pMethods->xWrite(ff(f)->real(), p, n, off);
}
int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  if (should_fail()) return SQLITE_IOERR_TRUNCATE;
  return ff(f)->real()->pMethods->xTruncate(ff(f)->real(), size);
}
int x_sync(sqlite3_file* f, int flags) {
  if (should_fail()) return SQLITE_IOERR_FSYNC;
  g_syncs.fetch_add(1);
  return ff(f)->real()->pMethods->xSync(ff(f)->real(), flags);
}
int x_file_size(sqlite3_file* f, sqlite3_int64* size) { return ff(f)->real()->pMethods->xFileSize(ff(f)->real(), size); }
int x_lock(sqlite3_file* f, int l) { return ff(f)->real()->pMethods->xLock(ff(f)->real(), l); }
int x_unlock(sqlite3_file* f, int l) { return ff(f)->real()->pMethods->xUnlock(ff(f)->real(), l); }
int x_check_reserved(sqlite3_file* f, int* out) { return ff(f)->real()->pMethods->xCheckReservedLock(ff(f)->real(), out); }
int x_file_control(sqlite3_file* f, int op, void* arg) { return ff(f)->real()->pMethods->xFileControl(ff(f)->real(), op, arg); }
int x_sector_size(sqlite3_file* f) { return ff(f)->real()->pMethods->xSectorSize(ff(f)->real()); }
int x_device_characteristics(sqlite3_file* f) {
  return ff(f)->real()->pMethods->xDeviceCharacteristics(ff(f)->real());
}
int x_shm_map(sqlite3_file* f, int pg, int sz, int extend, void volatile** pp) {
  return ff(f)->real()->pMethods->xShmMap(ff(f)->real(), pg, sz, extend, pp);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) { return ff(f)->real()->pMethods->xShmLock(ff(f)->real(), offset, n, flags); }
void x_shm_barrier(sqlite3_file* f) { ff(f)->real()->pMethods->xShmBarrier(ff(f)->real()); }
int x_shm_unmap(sqlite3_file* f, int del) { return ff(f)->real()->pMethods->xShmUnmap(ff(f)->real(), del); }

sqlite3_io_methods g_methods;  // filled in register_fault_vfs (version 2: WAL needs shm)
sqlite3_vfs g_vfs;

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  FaultFile* file = ff(f);
  std::memset(file->real(), 0, static_cast<size_t>(g_base->szOsFile));
  int rc = g_base->xOpen(g_base, name, file->real(), flags, out_flags);
  file->base.pMethods = rc == SQLITE_OK && file->real()->pMethods ? &g_methods : nullptr;
  return rc;
}
int x_delete(sqlite3_vfs*, const char* name, int sync) { return g_base->xDelete(g_base, name, sync); }
int x_access(sqlite3_vfs*, const char* name, int flags, int* out) { return g_base->xAccess(g_base, name, flags, out); }
int x_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) { return g_base->xFullPathname(g_base, name, n, out); }
void* x_dl_open(sqlite3_vfs*, const char* name) { return g_base->xDlOpen(g_base, name); }
void x_dl_error(sqlite3_vfs*, int n, char* msg) { g_base->xDlError(g_base, n, msg); }
void (*x_dl_sym(sqlite3_vfs*, void* h, const char* sym))(void) { return g_base->xDlSym(g_base, h, sym); }
void x_dl_close(sqlite3_vfs*, void* h) { g_base->xDlClose(g_base, h); }
int x_randomness(sqlite3_vfs*, int n, char* out) { return g_base->xRandomness(g_base, n, out); }
int x_sleep(sqlite3_vfs*, int us) { return g_base->xSleep(g_base, us); }
int x_current_time(sqlite3_vfs*, double* t) { return g_base->xCurrentTime(g_base, t); }
int x_get_last_error(sqlite3_vfs*, int n, char* msg) { return g_base->xGetLastError ? g_base->xGetLastError(g_base, n, msg) : 0; }
int x_current_time_int64(sqlite3_vfs*, sqlite3_int64* t) { return g_base->xCurrentTimeInt64(g_base, t); }

}  // namespace

bool register_fault_vfs() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] {
    g_base = sqlite3_vfs_find(nullptr);
    if (!g_base) return;
    g_methods = sqlite3_io_methods{2,           x_close,       x_read,         x_write,         x_truncate,
                                   x_sync,      x_file_size,   x_lock,         x_unlock,        x_check_reserved,
                                   x_file_control, x_sector_size, x_device_characteristics, x_shm_map, x_shm_lock,
                                   x_shm_barrier, x_shm_unmap, nullptr,        nullptr};
    std::memset(&g_vfs, 0, sizeof g_vfs);
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = static_cast<int>(sizeof(FaultFile)) + g_base->szOsFile;
    g_vfs.mxPathname = g_base->mxPathname;
    g_vfs.zName = kFaultVfsName;
    g_vfs.xOpen = x_open;
    g_vfs.xDelete = x_delete;
    g_vfs.xAccess = x_access;
    g_vfs.xFullPathname = x_full_pathname;
    g_vfs.xDlOpen = x_dl_open;
    g_vfs.xDlError = x_dl_error;
    g_vfs.xDlSym = x_dl_sym;
    g_vfs.xDlClose = x_dl_close;
    g_vfs.xRandomness = x_randomness;
    g_vfs.xSleep = x_sleep;
    g_vfs.xCurrentTime = x_current_time;
    g_vfs.xGetLastError = x_get_last_error;
    g_vfs.xCurrentTimeInt64 = x_current_time_int64;
    ok = sqlite3_vfs_register(&g_vfs, 0) == SQLITE_OK;
  });
  return ok;
}

void fail_after(int64_t operations) {
  g_seen.store(0);
  g_syncs.store(0);
  g_remaining.store(operations);
}

void clear_faults() {
  g_remaining.store(-1);
  g_seen.store(0);
  g_syncs.store(0);
}

int64_t fault_vfs_operations() { return g_seen.load(); }
int64_t fault_vfs_syncs() { return g_syncs.load(); }

}  // namespace tandem
