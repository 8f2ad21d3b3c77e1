"""Random workloads in the scenario format (../shared/spec/scenario-format.md).

One seed gives one scenario: 2-5 replicas writing to four tables (an INTEGER PRIMARY KEY,
a TEXT key, a composite key and a key-only table) with inserts, updates, deletes,
re-inserts, INSERT OR REPLACE, REPLACE, UPSERT (DO UPDATE and DO NOTHING) and multi-statement
transactions, values of every storage class, syncs in random orders inside random
partitions, and a final full sync.

What it leaves out on purpose, so that Tandem and cr-sqlite 0.16 can be compared for equality
(../shared/oracle/README.md, "Known behaviour of the reference"):
- primary-key UPDATEs (cr-sqlite 0.16 does not converge there);
- UPDATEs from an INTEGER to a REAL of the same number (cr-sqlite records none): no number
  is both an integer and a real of the value sets below (2.0 and 4.0 are reals, 2 and 4 are
  never integers), and the INTEGER-affinity column only ever receives values that it stores
  as themselves.
- inserts without an explicit key (Tandem allocates device-unique INTEGER PRIMARY KEYs).
"""
import json
import random

SCHEMA = [
    "CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, a, b, f REAL)",
    "CREATE TABLE s(name TEXT PRIMARY KEY NOT NULL, v DEFAULT 'dflt', n INTEGER DEFAULT 7)",
    "CREATE TABLE c(x TEXT NOT NULL, y INTEGER NOT NULL, v, PRIMARY KEY (x, y))",
    "CREATE TABLE k(x TEXT NOT NULL, y INTEGER NOT NULL, PRIMARY KEY (x, y))",
]

# table -> (key columns, value columns)
TABLES = {
    "t": (["id"], ["a", "b", "f"]),
    "s": (["name"], ["v", "n"]),
    "c": (["x", "y"], ["v"]),
    "k": (["x", "y"], []),
}

INTEGERS = [0, 1, -1, 3, 7, 9007199254740993]
REALS = [2.0, 0.5, -1.5, 4.0, 1e300]
TEXTS = ["", "a", "b", "1", "\u00e9t\u00e9", "it's"]
BLOBS = ["", "00", "61", "FF00"]


def sql_literal(v):
    kind, x = v
    if kind == "null":
        return "NULL"
    if kind == "int":
        return str(x)
    if kind == "real":
        return repr(float(x))  # always has a '.' or an exponent: a REAL literal
    if kind == "text":
        return "'" + x.replace("'", "''") + "'"
    return "x'" + x + "'"


def json_param(v):
    kind, x = v
    if kind == "null":
        return None
    if kind == "int":
        return x if abs(x) < 2**53 else {"int": str(x)}
    if kind == "real":
        return {"real": x}
    if kind == "text":
        return {"text": x}
    return {"blob": x}


class Generator:
    def __init__(self, seed):
        self.seed = seed
        self.rng = random.Random(seed)

    def value(self, column):
        r = self.rng
        if column == "n":  # INTEGER affinity: it stores 4.0 and '7' as integers, 0.5 as a real
            return r.choice([("int", r.choice(INTEGERS)), ("text", r.choice(["a", "", "b", "7"])), ("null", None),
                             ("blob", r.choice(BLOBS)), ("real", r.choice([4.0, 0.5]))])
        if column == "f":  # REAL affinity: reals (and integers it stores as reals), texts, NULL
            return r.choice([("real", r.choice(REALS)), ("int", r.choice([3, 7, -1])), ("text", "a"), ("null", None),
                             ("blob", "00")])
        k = r.randrange(5)
        if k == 0:
            return ("int", r.choice(INTEGERS))
        if k == 1:
            return ("real", r.choice(REALS))
        if k == 2:
            return ("text", r.choice(TEXTS))
        if k == 3:
            return ("blob", r.choice(BLOBS))
        return ("null", None)

    def key(self, table):
        r = self.rng
        if table == "t":
            return [("int", r.randrange(1, 7))]
        if table == "s":  # TEXT affinity: a blob key stays a blob, the integer 5 becomes '5'
            return [r.choice([("text", r.choice(["a", "b", "c", "\u00e9", "5"])), ("blob", "61"), ("int", 5)])]
        x = ("text", r.choice(["p", "q"])) if r.random() < 0.85 else ("blob", "70")
        y = ("int", r.randrange(1, 3)) if r.random() < 0.85 else ("real", 1.5)  # INTEGER affinity keeps 1.5
        return [x, y]

    def where(self, table, key):
        cols = TABLES[table][0]
        return " AND ".join(f"{c} = {sql_literal(v)}" for c, v in zip(cols, key))

    def statement(self, inline=False):
        """One statement as (sql, params or None)."""
        r = self.rng
        table = r.choice(["t", "t", "s", "c", "k"])
        keys, values = TABLES[table]
        key = self.key(table)
        op = r.randrange(10 if values else 7)
        # Some inserts name only part of the value columns (the others take their DEFAULT).
        given = values if op == 3 or r.random() < 0.75 else [c for c in values if r.random() < 0.5]
        vals = [self.value(c) for c in given]
        cols = keys + given
        row = key + vals
        use_params = not inline and r.random() < 0.25
        if use_params:
            lits = ", ".join("?" for _ in row)
            params = [json_param(v) for v in row]
        else:
            lits = ", ".join(sql_literal(v) for v in row)
            params = None
            if op in (1, 2, 5) and r.random() < 0.2:  # a second row in the same statement
                lits += "), (" + ", ".join(sql_literal(v) for v in self.key(table) + [self.value(c) for c in given])
        collist = ", ".join(cols)
        if op in (0, 1):
            return f"INSERT INTO {table}({collist}) VALUES ({lits})", params
        if op == 2:
            return f"INSERT OR REPLACE INTO {table}({collist}) VALUES ({lits})", params
        if op == 3:
            return f"REPLACE INTO {table} VALUES ({lits})", params
        if op == 4:
            return f"INSERT INTO {table}({collist}) VALUES ({lits}) ON CONFLICT DO NOTHING", params
        if op == 5:
            return f"INSERT OR IGNORE INTO {table}({collist}) VALUES ({lits})", params
        if op == 6:
            if r.random() < 0.2:  # a delete of several rows
                return f"DELETE FROM {table} WHERE {keys[-1]} = {sql_literal(key[-1])}", None
            return f"DELETE FROM {table} WHERE {self.where(table, key)}", None
        if op == 7:  # UPSERT that updates a subset of the columns
            chosen = [c for c in given if r.random() < 0.6] or [c for c in given[:1]]
            if not chosen:
                return f"INSERT INTO {table}({collist}) VALUES ({lits}) ON CONFLICT DO NOTHING", params
            form = r.randrange(3)
            if form == 0:
                sets = ", ".join(f"{c} = excluded.{c}" for c in chosen)
            elif form == 1:
                sets = ", ".join(f"{c} = coalesce(excluded.{c}, {c})" for c in chosen)
            else:
                sets = ", ".join(f"{c} = excluded.{c}" for c in chosen) + f" WHERE excluded.{chosen[0]} IS NOT NULL"
            conflict = ", ".join(keys)
            return f"INSERT INTO {table}({collist}) VALUES ({lits}) ON CONFLICT({conflict}) DO UPDATE SET {sets}", params
        # UPDATE of value columns (never the key)
        chosen = [c for c in values if r.random() < 0.5] or [r.choice(values)]
        sets = ", ".join(f"{c} = {sql_literal(self.value(c))}" for c in chosen)
        verb = r.choice(["UPDATE", "UPDATE", "UPDATE", "UPDATE OR REPLACE", "UPDATE OR IGNORE"])
        if r.random() < 0.2:
            return f"{verb} {table} SET {sets}", None
        return f"{verb} {table} SET {sets} WHERE {self.where(table, key)}", None

    def scenario(self):
        r = self.rng
        n = r.randrange(2, 6)
        names = [chr(ord("A") + i) for i in range(n)]
        steps = []
        # A partition: groups of replicas that only sync inside their group for a while.
        groups = [names]
        length = r.randrange(10, 90)
        for _ in range(length):
            if r.random() < 0.1:
                shuffled = names[:]
                r.shuffle(shuffled)
                cut = r.randrange(1, n) if n > 1 else 1
                groups = [shuffled[:cut], shuffled[cut:]] if r.random() < 0.7 else [names]
            if r.random() < 0.7:
                replica = r.choice(names)
                count = 1 if r.random() < 0.7 else r.randrange(2, 5)
                # The reference binds `params` to the first statement of a list (the runner: to
                # the first that has parameters): only the first statement may have them.
                stmts = [self.statement()] + [self.statement(inline=True) for _ in range(count - 1)]
                step = {"op": "sql", "replica": replica, "sql": stmts[0][0] if count == 1 else [s for s, _ in stmts]}
                if stmts[0][1] is not None:
                    step["params"] = stmts[0][1]
                steps.append(step)
            else:
                group = [g for g in groups if len(g) > 1]
                if not group:
                    continue
                g = r.choice(group)
                a, b = r.sample(g, 2)
                steps.append({"op": "sync", "from": a, "to": b})
        # Final full sync: everyone into the first replica, then the first into everyone.
        hub = names[0]
        for x in names[1:]:
            steps.append({"op": "sync", "from": x, "to": hub})
        for x in names[1:]:
            steps.append({"op": "sync", "from": hub, "to": x})
        steps.insert(0, {"op": "note", "note": f"tests/oracle/workload.py seed {self.seed}"})
        return {"schema": SCHEMA, "replicas": names, "steps": steps}


def generate(seed):
    return Generator(seed).scenario()


if __name__ == "__main__":
    import sys

    print(json.dumps(generate(int(sys.argv[1])), indent=1))
