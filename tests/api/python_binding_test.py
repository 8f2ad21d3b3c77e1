#!/usr/bin/env python3
"""The Python binding (python/tandem) on the build tree's libtandem.so, without a server:
open, transaction (all or nothing), query, a watch's initial rows and changes, optimistic
mutations (blocking and with a callback) and a rolled-back one, errors as tandem.Error with
their code, a callback's blocking call refused with wrong_thread, calls after close.

    TANDEM_LIBRARY=build/lib/libtandem.so python3 python_binding_test.py SOURCE_DIR
"""
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(sys.argv[1], "python"))
import tandem  # noqa: E402

checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        sys.exit("FAILED: " + what)


def expect_error(code, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except tandem.Error as e:
        check(e.code == code, "expected %s, got %s" % (code, e))
        return e
    check(False, "expected tandem.Error %s" % code)


SCHEMA = "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '', done INTEGER DEFAULT 0, data BLOB)"

with tempfile.TemporaryDirectory(prefix="tandem-py-") as tmp:
    db = tandem.open(os.path.join(tmp, "app.db"), SCHEMA)
    check(db.is_leader, "the first Database leads")
    v = db.exec("INSERT INTO todo(id, title, data) VALUES (?, ?, ?)", 1, "milk", b"\x00\x01")
    check(v > 0, "exec returns the commit's version")
    expect_error("constraint", db.transaction, [("INSERT INTO todo(id, title) VALUES (2, 'eggs')", ()),
                                                ("INSERT INTO todo(id, title) VALUES (1, 'dup')", ())])
    cols, rows = db.query_columns("SELECT id, title, data FROM todo")
    check(cols == ["id", "title", "data"], "columns %r" % cols)
    check(rows == [(1, "milk", b"\x00\x01")], "rows %r" % rows)
    check(isinstance(rows[0][2], tandem.Blob), "a BLOB comes back as tandem.Blob")

    seen = []
    cond = threading.Condition()
    probe = {}

    def on_event(event):
        with cond:
            seen.append(event)
            if not event.initial and "blocked" not in probe:
                try:
                    db.query("SELECT 1")
                    probe["blocked"] = "ok"
                except tandem.Error as e:
                    probe["blocked"] = e.code
            cond.notify_all()

    watch = db.watch("SELECT id, title FROM todo WHERE done = ? ORDER BY id", on_event, params=(0,))
    check(watch.columns == ["id", "title"], "watch columns")
    check(len(seen) == 1 and seen[0].initial, "the initial result arrives before watch returns")
    check([c.row for c in seen[0].changes] == [(1, "milk")], "initial rows %r" % (seen[0].changes,))

    db.mutate([tandem.insert("todo", id=2, title="eggs")])
    with cond:
        check(cond.wait_for(lambda: any(c.row == (2, "eggs") for e in seen for c in e.changes), timeout=10),
              "the mutation shows in the watch")
    check(probe.get("blocked") == "wrong_thread", "a blocking call from a callback: %r" % probe.get("blocked"))
    expect_error("constraint", db.mutate, [tandem.insert("todo", id=1, title="dup")])

    outcome = {}
    done = threading.Event()

    def on_done(error, version):
        outcome["error"], outcome["version"] = error, version
        done.set()

    db.mutate([tandem.update("todo", 2, done=1)], done=on_done)
    check(done.wait(10) and outcome["error"] is None and outcome["version"] > 0, "async outcome %r" % outcome)
    with cond:
        check(cond.wait_for(lambda: any(c.kind == "removed" and c.row[1] == "eggs" for e in seen for c in e.changes),
                            timeout=10), "the update removes the row from the view")
    db.mutate([tandem.delete("todo", 1)])
    check(db.query("SELECT count(*) FROM todo") == [(1,)], "delete applied")

    state = db.sync_state()
    check(not state.syncing and state.db_version > 0, "sync state without a server %r" % (state,))
    expect_error("invalid_argument", db.wait_synced, 1)
    expect_error("invalid_argument", tandem.open, os.path.join(tmp, "x.db"), "")
    watch.stop()
    db.close()
    expect_error("closed", db.query, "SELECT 1")
    expect_error("closed", db.exec, "DELETE FROM todo")
    db.close()

print("python binding: %d checks passed" % checks)
