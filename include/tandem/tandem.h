/* tandem.h: the C API of Tandem, for bindings (Swift, Kotlin/JNI, Python, Rust, .NET).
 *
 * The same operations as the C++ API (tandem/database.hpp) through opaque handles.
 *
 * Errors. Every function that can fail returns a tandem_code (TANDEM_OK = 0). The message
 * of the last failure on the calling thread is tandem_last_error(): a string owned by the
 * library, valid on that thread until its next call into the API.
 *
 * Threading. Every function may be called from any thread. Callbacks (watch events,
 * mutation outcomes, leader lost) run on the library's own threads, never on the caller's;
 * the events of one watch come one at a time, in order. A callback may call
 * tandem_mutate_commit with a callback, tandem_watch_stop, tandem_last_error and the
 * accessors of what it received; any other call from a callback returns
 * TANDEM_WRONG_THREAD (it would block the thread the library needs to answer it).
 *
 * Handles. A tandem_db stays valid until tandem_db_free, even after tandem_db_close (calls
 * on a closed one return TANDEM_CLOSED). The same holds for tandem_watch (tandem_watch_stop,
 * then tandem_watch_free). A NULL handle or NULL required argument returns
 * TANDEM_INVALID_ARGUMENT. Using a handle after its *_free is undefined, as with free().
 *
 * Memory. Strings and values passed in are borrowed for the duration of the call (the
 * library copies what it keeps). What the library returns is owned by it unless a function
 * says "the caller frees it with ...".
 */
#ifndef TANDEM_TANDEM_H
#define TANDEM_TANDEM_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define TANDEM_C_API __attribute__((visibility("default")))
#else
#define TANDEM_C_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Equal to tandem::api::Code. */
typedef enum tandem_code {
  TANDEM_OK = 0,
  TANDEM_INVALID_ARGUMENT = 1,
  TANDEM_CONSTRAINT = 2,
  TANDEM_UNSUPPORTED = 3,
  TANDEM_NOT_FOUND = 4,
  TANDEM_UNAUTHENTICATED = 5,
  TANDEM_PERMISSION_DENIED = 6,
  TANDEM_UNAVAILABLE = 7,
  TANDEM_INTERNAL = 8,
  TANDEM_RESOURCE_EXHAUSTED = 9,
  TANDEM_CLOSED = 10,
  TANDEM_WRONG_THREAD = 11
} tandem_code;

typedef enum tandem_type { TANDEM_NULL = 0, TANDEM_INTEGER = 1, TANDEM_REAL = 2, TANDEM_TEXT = 3, TANDEM_BLOB = 4 } tandem_type;

/* One SQLite value. TEXT and BLOB point at `size` bytes (TEXT is UTF-8, not necessarily
 * NUL-terminated when passed in; values handed out by the library are NUL-terminated). */
typedef struct tandem_value {
  int32_t type; /* tandem_type */
  int64_t integer;
  double real;
  const char* bytes;
  size_t size;
} tandem_value;

typedef struct tandem_db tandem_db;
typedef struct tandem_watch tandem_watch;
typedef struct tandem_rows tandem_rows;
typedef struct tandem_txn tandem_txn;
typedef struct tandem_mutation tandem_mutation;

/* The calling thread's last error message ("" if none). Owned by the library. */
TANDEM_C_API const char* tandem_last_error(void);
/* "constraint", "closed", ...: a static string. */
TANDEM_C_API const char* tandem_code_name(int32_t code);

/* ---- Opening and closing ---- */

typedef struct tandem_options {
  const char* path;    /* the SQLite file (required) */
  const char* schema;  /* CREATE TABLE statements separated by ';' (required) */
  const char* name;    /* this process's name (NULL: "app") */
  const char* server_url; /* NULL: no sync; else ws://host:port/sync or wss://... */
  const char* token;      /* required with server_url */
  const char* ca_file;    /* NULL: the system's trust store */
  int32_t insecure;       /* nonzero: do not verify the server's certificate (tests only) */
  int64_t timeout_ms;     /* bound of every blocking call (0: 30000) */
} tandem_options;

/* Opens a node on options->path (leader, or follower of the process that leads it) and
 * stores a new handle in *out; the caller frees it with tandem_db_free. Blocks. */
TANDEM_C_API int32_t tandem_db_open(const tandem_options* options, tandem_db** out);
/* Ends the watches and the node; blocks; idempotent. The handle stays valid. */
TANDEM_C_API int32_t tandem_db_close(tandem_db* db);
/* Closes (if still open) and frees the handle. NULL is ignored. Not from a callback. */
TANDEM_C_API void tandem_db_free(tandem_db* db);
/* 1 if this process leads the node, 0 if it follows, negative tandem_code on error. */
TANDEM_C_API int32_t tandem_db_is_leader(tandem_db* db);

/* ---- Reading ---- */

/* Runs a SELECT; *out receives the rows, which the caller frees with tandem_rows_free. */
TANDEM_C_API int32_t tandem_query(tandem_db* db, const char* sql, const tandem_value* params, size_t param_count,
                                  tandem_rows** out);
TANDEM_C_API void tandem_rows_free(tandem_rows* rows);
TANDEM_C_API size_t tandem_rows_count(const tandem_rows* rows);
TANDEM_C_API size_t tandem_rows_column_count(const tandem_rows* rows);
/* The column's name, owned by `rows` (NULL if out of range). */
TANDEM_C_API const char* tandem_rows_column_name(const tandem_rows* rows, size_t column);
/* Fills *out with a value owned by `rows` (its bytes live as long as `rows`). */
TANDEM_C_API int32_t tandem_rows_value(const tandem_rows* rows, size_t row, size_t column, tandem_value* out);

/* ---- Writing: transactions of SQL statements ---- */

/* A write transaction being assembled: statements run in one SQLite transaction at commit,
 * all or nothing. The caller ends it with tandem_txn_commit or tandem_txn_free. */
TANDEM_C_API int32_t tandem_txn_begin(tandem_db* db, tandem_txn** out);
TANDEM_C_API int32_t tandem_txn_add(tandem_txn* txn, const char* sql, const tandem_value* params, size_t param_count);
/* Commits and frees `txn` (whatever the outcome). *db_version (may be NULL) receives the
 * commit's version, *rows_changed (may be NULL) the rows it changed. Blocks. */
TANDEM_C_API int32_t tandem_txn_commit(tandem_txn* txn, int64_t* db_version, int64_t* rows_changed);
TANDEM_C_API void tandem_txn_free(tandem_txn* txn);
/* One statement in its own transaction. */
TANDEM_C_API int32_t tandem_exec(tandem_db* db, const char* sql, const tandem_value* params, size_t param_count,
                                 int64_t* db_version);

/* ---- Optimistic mutations ---- */

/* A batch of structured writes being assembled; the caller ends it with
 * tandem_mutate_commit or tandem_mutation_free. */
TANDEM_C_API int32_t tandem_mutation_begin(tandem_db* db, tandem_mutation** out);
TANDEM_C_API int32_t tandem_mutation_insert(tandem_mutation* m, const char* table, const char* const* columns,
                                            const tandem_value* values, size_t count, int32_t or_replace);
TANDEM_C_API int32_t tandem_mutation_update(tandem_mutation* m, const char* table, const tandem_value* pk, size_t pk_count,
                                            const char* const* columns, const tandem_value* values, size_t count);
TANDEM_C_API int32_t tandem_mutation_delete(tandem_mutation* m, const char* table, const tandem_value* pk, size_t pk_count);
TANDEM_C_API void tandem_mutation_free(tandem_mutation* m);

/* The outcome of a mutation batch: TANDEM_OK with the commit's version, or why it was
 * rolled back (`message`, owned by the library, valid during the call). */
typedef void (*tandem_outcome_fn)(void* user, int32_t code, const char* message, int64_t db_version);
/* Sends the batch and frees `m`. Every live query of the node shows it at once (pending).
 * With `done` set this returns at once (allowed from a callback) and `done` runs exactly
 * once: later on a library thread, or, for a batch refused before it is sent (db closed,
 * malformed mutation), on the calling thread before this returns. With `done` NULL it
 * blocks and returns the outcome (*db_version, may be NULL, receives the commit's version). */
TANDEM_C_API int32_t tandem_mutate_commit(tandem_mutation* m, tandem_outcome_fn done, void* user, int64_t* db_version);

/* ---- Live queries ---- */

typedef enum tandem_change_kind { TANDEM_ADDED = 0, TANDEM_REMOVED = 1, TANDEM_CHANGED = 2 } tandem_change_kind;

/* One event of a watch, borrowed by the callback: valid only during the call. */
typedef struct tandem_event tandem_event;
/* First the initial result (initial = 1, every row ADDED in order), then each change. */
typedef void (*tandem_watch_fn)(void* user, const tandem_event* event);

TANDEM_C_API int32_t tandem_event_is_initial(const tandem_event* e);
TANDEM_C_API int64_t tandem_event_db_version(const tandem_event* e);
/* The query's error since this event ("" when none; rows kept). */
TANDEM_C_API const char* tandem_event_error(const tandem_event* e);
TANDEM_C_API size_t tandem_event_count(const tandem_event* e);
/* Change i: its kind, positions (-1 without ORDER BY; see tandem::api::RowChange), its
 * row's stable key (`key_size` bytes, may be NULL) and values. */
TANDEM_C_API int32_t tandem_event_change(const tandem_event* e, size_t i, int32_t* kind, int64_t* position,
                                         int64_t* old_position);
TANDEM_C_API const char* tandem_event_key(const tandem_event* e, size_t i, size_t* key_size);
TANDEM_C_API size_t tandem_event_column_count(const tandem_event* e, size_t i);
TANDEM_C_API int32_t tandem_event_value(const tandem_event* e, size_t i, size_t column, tandem_value* out);

/* Watches a live query; `fn` receives the initial result before this returns, then every
 * change. The caller frees *out with tandem_watch_free. `user` is passed back untouched. */
TANDEM_C_API int32_t tandem_watch_start(tandem_db* db, const char* sql, const tandem_value* params, size_t param_count,
                                        tandem_watch_fn fn, void* user, tandem_watch** out);
/* Ends the watch: outside a callback, no call of `fn` runs after this returns; from a
 * callback, none starts. Idempotent; allowed after the db was closed. */
TANDEM_C_API int32_t tandem_watch_stop(tandem_watch* w);
/* The watch's columns, owned by the watch. */
TANDEM_C_API size_t tandem_watch_column_count(const tandem_watch* w);
TANDEM_C_API const char* tandem_watch_column_name(const tandem_watch* w, size_t column);
/* Stops and frees. NULL is ignored. */
TANDEM_C_API void tandem_watch_free(tandem_watch* w);

/* ---- Sync ---- */

typedef struct tandem_sync_state {
  int32_t syncing;         /* the node has a server */
  int32_t online;          /* syncing, and no attempt failed since the last welcome */
  int64_t db_version;      /* the local database's version */
  int64_t acked_version;   /* the server holds every own change up to this version */
  int64_t pending_changes; /* own changes not yet acknowledged */
} tandem_sync_state;

/* Fills *out; the last connection problem, if any, is then tandem_last_error(). Blocks. */
TANDEM_C_API int32_t tandem_sync_state_get(tandem_db* db, tandem_sync_state* out);
/* Blocks until connected, everything local acknowledged and everything remote merged. */
TANDEM_C_API int32_t tandem_wait_synced(tandem_db* db, int64_t timeout_ms);
/* Blocks until the server holds every own change up to db_version; *acked (may be NULL)
 * receives the server's acknowledged version. */
TANDEM_C_API int32_t tandem_wait_acked(tandem_db* db, int64_t db_version, int64_t timeout_ms, int64_t* acked);

#ifdef __cplusplus
}
#endif

#endif /* TANDEM_TANDEM_H */
