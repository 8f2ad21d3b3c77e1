#!/usr/bin/env python3
"""Smoke test of `tandem bench node` with a few writes and two takeover cycles: six JSON
lines (a write and an optimistic mutation across processes, both in-process baselines, a plain
SQLite commit as the committed path's floor, kill -9 of the leader to a write on the new leader), every write seen by both views, sane numbers. Not a timed test: it
checks that the benchmark runs and measures, not how fast."""
import json
import subprocess
import sys

binary = sys.argv[1]
out = subprocess.run([binary, "bench", "node", "--count", "50", "--cycles", "2"], capture_output=True, text=True, timeout=120)
if out.returncode != 0:
    sys.exit("tandem bench node failed: " + out.stderr)
lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
if len(lines) != 6 or any(l.get("bench") != "node" for l in lines):
    sys.exit("expected six node lines; got " + out.stdout)
takeover = lines.pop()
if takeover.get("cycles") != 2 or not (0 < takeover.get("ms_p50", 0) <= takeover.get("ms_max", 0)) or "kill -9" not in takeover.get("path", ""):
    sys.exit(f"implausible takeover figures: {takeover}")
for l in lines:
    for field in ("us_p50", "us_p99", "us_max", "changes", "path"):
        if field not in l:
            sys.exit(f"missing {field}: {l}")
    if l["changes"] != 50 or not (0 < l["us_p50"] <= l["us_p99"] <= l["us_max"]):
        sys.exit(f"implausible figures: {l}")
paths = [l["path"] for l in lines]
if not ("write" in paths[0] and "process B" in paths[0] and "mutation" in paths[1] and "process B" in paths[1]
        and "write" in paths[2] and "same process" in paths[2] and "mutation" in paths[3] and "same process" in paths[3]
        and "plain SQLite commit" in paths[4]):
    sys.exit("unexpected paths: " + out.stdout)
print("1 passed, 0 failed")
