#!/usr/bin/env python3
"""Smoke test of `tandem bench ivm` on a small table: one JSON line per view with every field
the issue asks for, the maintained result as large as SQLite's, and sane numbers. Not a timed
test: it checks that the benchmark runs and measures, not how fast."""
import json
import subprocess
import sys

binary = sys.argv[1]
out = subprocess.run([binary, "bench", "ivm", "--rows", "3000", "--changes", "300", "--requery-runs", "2"],
                     capture_output=True, text=True, timeout=300)
if out.returncode != 0:
    sys.exit("tandem bench ivm failed: " + out.stderr)
lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
views = {l["view"]: l for l in lines}
if sorted(views) != ["a", "b", "c"]:
    sys.exit("expected views a, b, c; got " + out.stdout)
for name, v in views.items():
    for field in ("ivm_update_us_p50", "ivm_update_us_p99", "requery_ms_p50", "ratio", "view_bytes", "hydrate_ms"):
        if field not in v:
            sys.exit(f"view {name}: missing {field}")
    if not v["row_count_matches"] or not v["result_matches_sqlite"]:
        sys.exit(f"view {name}: the maintained result differs in size from SQLite's: {v}")
    if v["changes"] != 300 or v["ivm_update_us_p50"] <= 0 or v["view_bytes"] <= 0:
        sys.exit(f"view {name}: implausible figures: {v}")
if views["a"]["result_rows"] != 50 or views["b"]["result_rows"] != 1000:
    sys.exit("unexpected result sizes: " + out.stdout)
print("1 passed, 0 failed")
