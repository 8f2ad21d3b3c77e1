#!/usr/bin/env python3
"""Smoke test of `tandem bench node` with a few writes: two JSON lines (across processes and
the in-process baseline), every write seen by both views, sane numbers. Not a timed test: it
checks that the benchmark runs and measures, not how fast."""
import json
import subprocess
import sys

binary = sys.argv[1]
out = subprocess.run([binary, "bench", "node", "--count", "50"], capture_output=True, text=True, timeout=120)
if out.returncode != 0:
    sys.exit("tandem bench node failed: " + out.stderr)
lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
if len(lines) != 2 or any(l.get("bench") != "node" for l in lines):
    sys.exit("expected two node lines; got " + out.stdout)
for l in lines:
    for field in ("us_p50", "us_p99", "us_max", "changes", "path"):
        if field not in l:
            sys.exit(f"missing {field}: {l}")
    if l["changes"] != 50 or not (0 < l["us_p50"] <= l["us_p99"] <= l["us_max"]):
        sys.exit(f"implausible figures: {l}")
if "process B" not in lines[0]["path"] or "same process" not in lines[1]["path"]:
    sys.exit("unexpected paths: " + out.stdout)
print("1 passed, 0 failed")
