"""Tandem for Python: a binding of the C API (tandem/tandem.h) with ctypes.

Nothing is compiled at install: the module loads libtandem.so (the TANDEM_LIBRARY
environment variable, else the library installed beside this package, else the system's
library path).

    import tandem
    db = tandem.open("app.db", schema="CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT)",
                     server="ws://127.0.0.1:7000/sync", token=token)
    watch = db.watch("SELECT id, title FROM todo ORDER BY id", lambda event: print(event))
    db.mutate([tandem.insert("todo", id=1, title="buy milk")])
    db.wait_synced(timeout=10)
    db.close()

Failures raise tandem.Error (its .code is a TANDEM_* code name such as "constraint").
Callbacks run on Tandem's own threads; inside one, only mutate(..., done=...) and
Watch.stop() may be called (other calls raise Error with code "wrong_thread").
"""

import ctypes
import ctypes.util
import os
import sys
import traceback
from collections import namedtuple

__all__ = ["open", "Database", "Watch", "Error", "Change", "Event", "SyncState", "Blob",
           "insert", "update", "delete"]

_CODES = ["ok", "invalid_argument", "constraint", "unsupported", "not_found", "unauthenticated",
          "permission_denied", "unavailable", "internal", "resource_exhausted", "closed", "wrong_thread"]
_NULL, _INTEGER, _REAL, _TEXT, _BLOB = range(5)
_KINDS = ["added", "removed", "changed"]


class Error(Exception):
    """A Tandem failure: .code (e.g. "constraint", "closed") and .message."""

    def __init__(self, code, message):
        self.code = _CODES[code] if 0 <= code < len(_CODES) else str(code)
        self.message = message
        super().__init__("%s: %s" % (self.code, message))


class Blob(bytes):
    """A BLOB value (plain bytes are BLOBs too; str is TEXT)."""


Change = namedtuple("Change", "kind key row position old_position")
Event = namedtuple("Event", "initial changes db_version error")
SyncState = namedtuple("SyncState", "syncing online db_version acked_version pending_changes last_error")


class _Value(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int32), ("integer", ctypes.c_int64), ("real", ctypes.c_double),
                ("bytes", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class _Options(ctypes.Structure):
    _fields_ = [("path", ctypes.c_char_p), ("schema", ctypes.c_char_p), ("name", ctypes.c_char_p),
                ("server_url", ctypes.c_char_p), ("token", ctypes.c_char_p), ("ca_file", ctypes.c_char_p),
                ("insecure", ctypes.c_int32), ("timeout_ms", ctypes.c_int64)]


class _SyncState(ctypes.Structure):
    _fields_ = [("syncing", ctypes.c_int32), ("online", ctypes.c_int32), ("db_version", ctypes.c_int64),
                ("acked_version", ctypes.c_int64), ("pending_changes", ctypes.c_int64)]


_WATCH_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
_OUTCOME_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int32, ctypes.c_char_p, ctypes.c_int64)


def _find_library():
    explicit = os.environ.get("TANDEM_LIBRARY")
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        from . import _install  # written by cmake --install: where libtandem.so went
        candidate = os.path.normpath(os.path.join(here, _install.LIBRARY))
        if os.path.exists(candidate):
            return candidate
    except ImportError:
        pass
    found = ctypes.util.find_library("tandem")
    if found:
        return found
    raise OSError("libtandem.so not found: set TANDEM_LIBRARY to its path")


_lib = ctypes.CDLL(_find_library())
_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_VALUES = ctypes.POINTER(_Value)
_STRS = ctypes.POINTER(ctypes.c_char_p)
_I64P = ctypes.POINTER(ctypes.c_int64)


def _declare(name, restype, *argtypes):
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


_last_error = _declare("tandem_last_error", ctypes.c_char_p)
_db_open = _declare("tandem_db_open", ctypes.c_int32, ctypes.POINTER(_Options), _PP)
_db_close = _declare("tandem_db_close", ctypes.c_int32, _P)
_db_free = _declare("tandem_db_free", None, _P)
_db_is_leader = _declare("tandem_db_is_leader", ctypes.c_int32, _P)
_query = _declare("tandem_query", ctypes.c_int32, _P, ctypes.c_char_p, _VALUES, ctypes.c_size_t, _PP)
_rows_free = _declare("tandem_rows_free", None, _P)
_rows_count = _declare("tandem_rows_count", ctypes.c_size_t, _P)
_rows_column_count = _declare("tandem_rows_column_count", ctypes.c_size_t, _P)
_rows_column_name = _declare("tandem_rows_column_name", ctypes.c_char_p, _P, ctypes.c_size_t)
_rows_value = _declare("tandem_rows_value", ctypes.c_int32, _P, ctypes.c_size_t, ctypes.c_size_t, _VALUES)
_txn_begin = _declare("tandem_txn_begin", ctypes.c_int32, _P, _PP)
_txn_add = _declare("tandem_txn_add", ctypes.c_int32, _P, ctypes.c_char_p, _VALUES, ctypes.c_size_t)
_txn_commit = _declare("tandem_txn_commit", ctypes.c_int32, _P, _I64P, _I64P)
_txn_free = _declare("tandem_txn_free", None, _P)
_mutation_begin = _declare("tandem_mutation_begin", ctypes.c_int32, _P, _PP)
_mutation_insert = _declare("tandem_mutation_insert", ctypes.c_int32, _P, ctypes.c_char_p, _STRS, _VALUES,
                            ctypes.c_size_t, ctypes.c_int32)
_mutation_update = _declare("tandem_mutation_update", ctypes.c_int32, _P, ctypes.c_char_p, _VALUES, ctypes.c_size_t,
                            _STRS, _VALUES, ctypes.c_size_t)
_mutation_delete = _declare("tandem_mutation_delete", ctypes.c_int32, _P, ctypes.c_char_p, _VALUES, ctypes.c_size_t)
_mutation_free = _declare("tandem_mutation_free", None, _P)
_mutate_commit = _declare("tandem_mutate_commit", ctypes.c_int32, _P, _OUTCOME_FN, _P, _I64P)
_event_is_initial = _declare("tandem_event_is_initial", ctypes.c_int32, _P)
_event_db_version = _declare("tandem_event_db_version", ctypes.c_int64, _P)
_event_error = _declare("tandem_event_error", ctypes.c_char_p, _P)
_event_count = _declare("tandem_event_count", ctypes.c_size_t, _P)
_event_change = _declare("tandem_event_change", ctypes.c_int32, _P, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int32),
                         _I64P, _I64P)
_event_key = _declare("tandem_event_key", ctypes.c_void_p, _P, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t))
_event_column_count = _declare("tandem_event_column_count", ctypes.c_size_t, _P, ctypes.c_size_t)
_event_value = _declare("tandem_event_value", ctypes.c_int32, _P, ctypes.c_size_t, ctypes.c_size_t, _VALUES)
_watch_start = _declare("tandem_watch_start", ctypes.c_int32, _P, ctypes.c_char_p, _VALUES, ctypes.c_size_t, _WATCH_FN,
                        _P, _PP)
_watch_stop = _declare("tandem_watch_stop", ctypes.c_int32, _P)
_watch_column_count = _declare("tandem_watch_column_count", ctypes.c_size_t, _P)
_watch_column_name = _declare("tandem_watch_column_name", ctypes.c_char_p, _P, ctypes.c_size_t)
_watch_free = _declare("tandem_watch_free", None, _P)
_sync_state_get = _declare("tandem_sync_state_get", ctypes.c_int32, _P, ctypes.POINTER(_SyncState))
_wait_synced = _declare("tandem_wait_synced", ctypes.c_int32, _P, ctypes.c_int64)
_wait_acked = _declare("tandem_wait_acked", ctypes.c_int32, _P, ctypes.c_int64, ctypes.c_int64, _I64P)


def _check(code):
    if code != 0:
        raise Error(code, (_last_error() or b"").decode("utf-8", "replace"))


def _encode(s):
    return s.encode("utf-8") if isinstance(s, str) else s


class _Values:
    """Python values as a borrowed tandem_value array (the buffers live as long as this)."""

    def __init__(self, values):
        values = list(values)
        self.keep = []
        self.array = (_Value * max(len(values), 1))()
        self.count = len(values)
        for i, v in enumerate(values):
            c = self.array[i]
            if v is None:
                c.type = _NULL
            elif isinstance(v, bool) or isinstance(v, int):
                c.type, c.integer = _INTEGER, int(v)
            elif isinstance(v, float):
                c.type, c.real = _REAL, v
            elif isinstance(v, str):
                data = v.encode("utf-8")
                buf = ctypes.create_string_buffer(data, len(data))
                self.keep.append(buf)
                c.type, c.bytes, c.size = _TEXT, ctypes.addressof(buf), len(data)
            elif isinstance(v, (bytes, bytearray)):
                data = bytes(v)
                buf = ctypes.create_string_buffer(data, max(len(data), 1))
                self.keep.append(buf)
                c.type, c.bytes, c.size = _BLOB, ctypes.addressof(buf), len(data)
            else:
                raise TypeError("a Tandem value is None, int, float, str or bytes, not %r" % type(v).__name__)


def _from_c(value):
    if value.type == _INTEGER:
        return value.integer
    if value.type == _REAL:
        return value.real
    if value.type == _TEXT:
        return ctypes.string_at(value.bytes, value.size).decode("utf-8", "replace")
    if value.type == _BLOB:
        return Blob(ctypes.string_at(value.bytes, value.size))
    return None


def _columns(names):
    array = (ctypes.c_char_p * max(len(names), 1))()
    for i, n in enumerate(names):
        array[i] = _encode(n)
    return array


# Mutations: ("insert", table, columns, values, or_replace) / ("update", table, pk, columns,
# values) / ("delete", table, pk).
def insert(table, or_replace=False, **values):
    """An optimistic INSERT: insert("todo", id=1, title="milk")."""
    return ("insert", table, list(values.keys()), list(values.values()), or_replace)


def update(table, pk, **values):
    """An optimistic UPDATE of the row with primary key `pk` (a value or a tuple)."""
    pk = list(pk) if isinstance(pk, (tuple, list)) else [pk]
    return ("update", table, pk, list(values.keys()), list(values.values()))


def delete(table, pk):
    """An optimistic DELETE of the row with primary key `pk` (a value or a tuple)."""
    pk = list(pk) if isinstance(pk, (tuple, list)) else [pk]
    return ("delete", table, pk)


class Watch:
    """A live query; stop() ends it (no callback runs after stop returns, outside callbacks)."""

    def __init__(self, handle, trampoline):
        self._handle = handle
        self._trampoline = trampoline  # the C callback must outlive the watch
        n = _watch_column_count(handle)
        self.columns = [_watch_column_name(handle, i).decode("utf-8") for i in range(n)]

    def stop(self):
        if self._handle:
            _check(_watch_stop(self._handle))

    def __del__(self):
        if getattr(self, "_handle", None):
            _watch_free(self._handle)
            self._handle = None


class Database:
    """A Tandem node on one SQLite file (see tandem.open)."""

    def __init__(self, handle):
        self._handle = handle
        self._pending = {}  # outcome callbacks in flight, kept alive until they ran
        self._next = 0

    @property
    def is_leader(self):
        r = _db_is_leader(self._handle)
        if r < 0:
            _check(-r)
        return r == 1

    def query(self, sql, *params):
        """Rows of a SELECT as a list of tuples (column names: query_columns)."""
        return self.query_columns(sql, *params)[1]

    def query_columns(self, sql, *params):
        values = _Values(params)
        rows = ctypes.c_void_p()
        _check(_query(self._handle, _encode(sql), values.array, values.count, ctypes.byref(rows)))
        try:
            ncol = _rows_column_count(rows)
            cols = [_rows_column_name(rows, c).decode("utf-8") for c in range(ncol)]
            out = []
            v = _Value()
            for r in range(_rows_count(rows)):
                row = []
                for c in range(ncol):
                    _check(_rows_value(rows, r, c, ctypes.byref(v)))
                    row.append(_from_c(v))
                out.append(tuple(row))
            return cols, out
        finally:
            _rows_free(rows)

    def exec(self, sql, *params):
        """One statement in its own write transaction; returns the commit's db_version."""
        return self.transaction([(sql, params)])

    def transaction(self, statements):
        """Runs [(sql, params), ...] in one write transaction, all or nothing; returns its db_version."""
        txn = ctypes.c_void_p()
        _check(_txn_begin(self._handle, ctypes.byref(txn)))
        try:
            for sql, params in statements:
                values = _Values(params)
                _check(_txn_add(txn, _encode(sql), values.array, values.count))
        except Exception:
            _txn_free(txn)
            raise
        version = ctypes.c_int64()
        _check(_txn_commit(txn, ctypes.byref(version), None))
        return version.value

    def mutate(self, mutations, done=None):
        """Optimistic writes (tandem.insert/update/delete), shown at once in every live query.
        Without `done`: blocks and returns the commit's db_version (raises Error when rolled
        back). With `done(error_or_None, db_version)`: returns at once; done runs later on a
        Tandem thread."""
        m = ctypes.c_void_p()
        _check(_mutation_begin(self._handle, ctypes.byref(m)))
        try:
            for op in mutations:
                if op[0] == "insert":
                    _, table, cols, vals, or_replace = op
                    v = _Values(vals)
                    _check(_mutation_insert(m, _encode(table), _columns(cols), v.array, v.count, 1 if or_replace else 0))
                elif op[0] == "update":
                    _, table, pk, cols, vals = op
                    k, v = _Values(pk), _Values(vals)
                    _check(_mutation_update(m, _encode(table), k.array, k.count, _columns(cols), v.array, v.count))
                elif op[0] == "delete":
                    _, table, pk = op
                    k = _Values(pk)
                    _check(_mutation_delete(m, _encode(table), k.array, k.count))
                else:
                    raise ValueError("unknown mutation %r" % (op[0],))
        except Exception:
            _mutation_free(m)
            raise
        if done is None:
            version = ctypes.c_int64()
            _check(_mutate_commit(m, _OUTCOME_FN(), None, ctypes.byref(version)))
            return version.value
        self._next += 1
        token = self._next

        def outcome(_user, code, message, version):
            self._pending.pop(token, None)
            try:
                done(None if code == 0 else Error(code, (message or b"").decode("utf-8", "replace")), version)
            except Exception:
                traceback.print_exc(file=sys.stderr)

        trampoline = _OUTCOME_FN(outcome)
        self._pending[token] = trampoline
        _check(_mutate_commit(m, trampoline, None, None))
        return None

    def watch(self, sql, callback, params=()):
        """A live query: callback(Event) gets the initial rows (initial=True, every row "added"),
        then each change, on a Tandem thread. Returns a Watch (keep it: dropping it stops the watch)."""

        def on_event(_user, event):
            try:
                changes = []
                kind, pos, old = ctypes.c_int32(), ctypes.c_int64(), ctypes.c_int64()
                v = _Value()
                for i in range(_event_count(event)):
                    _event_change(event, i, ctypes.byref(kind), ctypes.byref(pos), ctypes.byref(old))
                    size = ctypes.c_size_t()
                    key_ptr = _event_key(event, i, ctypes.byref(size))
                    key = ctypes.string_at(key_ptr, size.value) if key_ptr else b""
                    row = []
                    for c in range(_event_column_count(event, i)):
                        _event_value(event, i, c, ctypes.byref(v))
                        row.append(_from_c(v))
                    changes.append(Change(_KINDS[kind.value], key, tuple(row), pos.value, old.value))
                error = (_event_error(event) or b"").decode("utf-8", "replace")
                callback(Event(bool(_event_is_initial(event)), changes, _event_db_version(event), error))
            except Exception:
                traceback.print_exc(file=sys.stderr)

        trampoline = _WATCH_FN(on_event)
        values = _Values(params)
        handle = ctypes.c_void_p()
        _check(_watch_start(self._handle, _encode(sql), values.array, values.count, trampoline, None,
                            ctypes.byref(handle)))
        return Watch(handle, trampoline)

    def sync_state(self):
        st = _SyncState()
        _check(_sync_state_get(self._handle, ctypes.byref(st)))
        last = (_last_error() or b"").decode("utf-8", "replace")
        return SyncState(bool(st.syncing), bool(st.online), st.db_version, st.acked_version, st.pending_changes, last)

    def wait_synced(self, timeout=30.0):
        """Blocks until connected, every own change acknowledged and every remote one merged."""
        _check(_wait_synced(self._handle, int(timeout * 1000)))

    def wait_acked(self, db_version, timeout=30.0):
        """Blocks until the server holds every own change up to db_version; its acked version."""
        acked = ctypes.c_int64()
        _check(_wait_acked(self._handle, db_version, int(timeout * 1000), ctypes.byref(acked)))
        return acked.value

    def close(self):
        if self._handle:
            _check(_db_close(self._handle))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_handle", None):
            _db_free(self._handle)
            self._handle = None


def open(path, schema, server=None, token=None, name="python", ca_file=None, insecure=False, timeout=30.0):
    """Opens a node on the SQLite file `path` with `schema` (CREATE TABLE statements), leader
    or follower of the process leading it; with `server` and `token` it syncs."""
    o = _Options()
    o.path = _encode(path)
    o.schema = _encode(schema)
    o.name = _encode(name)
    o.server_url = _encode(server) if server else None
    o.token = _encode(token) if token else None
    o.ca_file = _encode(ca_file) if ca_file else None
    o.insecure = 1 if insecure else 0
    o.timeout_ms = int(timeout * 1000)
    handle = ctypes.c_void_p()
    _check(_db_open(ctypes.byref(o), ctypes.byref(handle)))
    return Database(handle)
