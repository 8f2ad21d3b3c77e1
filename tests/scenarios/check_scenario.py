#!/usr/bin/env python3
"""Runs `tandem scenario` on one scenario file and compares with its expectation.

NAME.json is the scenario; NAME.expected.json is either the exact output document, or
{"exit": N, "stderr_contains": "..."} for scenarios that must be refused.
Usage: check_scenario.py TANDEM_BINARY NAME.json
To (re)write an expectation after checking the output by hand: TANDEM_BLESS=1.
"""
import json, os, subprocess, sys

binary, scenario = sys.argv[1], sys.argv[2]
expected_path = scenario[:-len(".json")] + ".expected.json"
run = subprocess.run([binary, "scenario", scenario], capture_output=True, text=True, timeout=300)
if os.environ.get("TANDEM_BLESS"):
    with open(expected_path, "w") as f:
        f.write(json.dumps(json.loads(run.stdout), indent=1, sort_keys=True) + "\n")
    sys.exit(0)
with open(expected_path) as f:
    expected = json.load(f)
if "exit" in expected and "replicas" not in expected:
    ok = run.returncode == expected["exit"] and expected.get("stderr_contains", "") in run.stderr
    if not ok:
        print(f"expected exit {expected['exit']} with {expected.get('stderr_contains')!r} on stderr;"
              f" got exit {run.returncode}, stderr {run.stderr!r}")
    sys.exit(0 if ok else 1)
if run.returncode != 0:
    print(f"tandem scenario exited {run.returncode}: {run.stderr}")
    sys.exit(1)
actual = json.loads(run.stdout)
if actual != expected:
    print("output differs from", expected_path)
    print("actual:\n" + json.dumps(actual, indent=1, sort_keys=True))
    sys.exit(1)
