"""The todo list of examples/todo in Python, through the ctypes binding (import tandem).

    python3 todo.py --db FILE --server URL --token TOKEN [--expect TITLE] [add TITLE]

Opens the list and syncs, watches it (printing "view: ..." lines as it changes), waits
until an item titled --expect shows (from another device), adds TITLE optimistically,
waits until the server holds it, and prints the final list ("final: ..." lines).
"""
import argparse
import random
import sys
import threading

import tandem

SCHEMA = "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '', done INTEGER NOT NULL DEFAULT 0)"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--expect")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args()

    db = tandem.open(args.db, SCHEMA, server=args.server, token=args.token, name="todo-py")
    rows = {}  # key -> (id, title, done)
    seen = threading.Condition()

    def on_event(event):
        with seen:
            for c in event.changes:
                if c.kind == "removed":
                    rows.pop(c.key, None)
                else:
                    rows[c.key] = c.row
            titles = sorted(r[1] for r in rows.values())
            print("view: %s %s" % ("initial" if event.initial else "change", titles), flush=True)
            seen.notify_all()

    watch = db.watch("SELECT id, title, done FROM todo ORDER BY id", on_event)
    db.wait_synced(timeout=10)
    if args.expect:
        with seen:
            if not seen.wait_for(lambda: any(r[1] == args.expect for r in rows.values()), timeout=10):
                print("todo.py: %r never showed" % args.expect, file=sys.stderr)
                return 1
    if len(args.command) == 2 and args.command[0] == "add":
        try:
            # An optimistic insert names its key; a random one keeps devices from colliding.
            db.mutate([tandem.insert("todo", id=random.randrange(1, 10**9), title=args.command[1])])
        except tandem.Error as e:
            print("todo.py: rolled back: %s" % e, file=sys.stderr)
            return 1
    db.wait_synced(timeout=10)
    state = db.sync_state()
    print("sync: online=%d pending=%d" % (state.online, state.pending_changes))
    watch.stop()
    for row in db.query("SELECT id, title, done FROM todo ORDER BY id"):
        print("final: [%s] %d %s" % ("x" if row[2] else " ", row[0], row[1]))
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
