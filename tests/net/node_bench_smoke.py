#!/usr/bin/env python3
"""Smoke test of `tandem bench node` with a few writes and two takeover cycles: three JSON
lines (across processes, the in-process baseline, kill -9 of the leader to a write on the new
leader), every write seen by both views, sane numbers. Not a timed test: it
checks that the benchmark runs and measures, not how fast."""
import json
import subprocess
import sys

binary = sys.argv[1]
out = subprocess.run([binary, "bench", "node", "--count", "50", "--cycles", "2"], capture_output=True, text=True, timeout=120)
if out.returncode != 0:
    sys.exit("tandem bench node failed: " + out.stderr)
lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
if len(lines) != 3 or any(l.get("bench") != "node" for l in lines):
    sys.exit("expected three node lines; got " + out.stdout)
takeover = lines.pop()
if takeover.get("cycles") != 2 or not (0 < takeover.get("ms_p50", 0) <= takeover.get("ms_max", 0)) or "kill -9" not in takeover.get("path", ""):
    sys.exit(f"implausible takeover figures: {takeover}")
for l in lines:
    for field in ("us_p50", "us_p99", "us_max", "changes", "path"):
        if field not in l:
            sys.exit(f"missing {field}: {l}")
    if l["changes"] != 50 or not (0 < l["us_p50"] <= l["us_p99"] <= l["us_max"]):
        sys.exit(f"implausible figures: {l}")
if "process B" not in lines[0]["path"] or "same process" not in lines[1]["path"]:
    sys.exit("unexpected paths: " + out.stdout)
print("1 passed, 0 failed")
