#!/usr/bin/env python3
"""Runs the ctest suite of a build folder and proves that it ran every Catch2 test case.

    python3 scripts/check_tests.py BUILD_DIR [ctest arguments...]
    python3 scripts/check_tests.py --list-only BUILD_DIR

A green ctest is not enough: catch_discover_tests splits a test name on ';' into entries that
match no test case, and Catch2 then runs nothing and exits 0. So this script checks, and fails
(exit 1) on any difference:

1. Registration (before running anything, also the whole of --list-only):
   - every tests/**/*.cpp that defines a TEST_CASE is compiled into some target
     (compile_commands.json), and every such target's binary exists;
   - for every ctest entry that runs a Catch2 binary, the test cases it selects are listed by
     Catch2 itself: the entry's own command line plus --list-test-names-only, so the binary's
     own test-spec parser decides (escapes, commas, brackets, wildcards), not a guess here;
   - each entry selects at least one test case, and per binary the union of the selected
     test cases equals the binary's full list (`BINARY --list-test-names-only`): a binary
     with no entries at all (built, never registered) fails here too.
2. Execution (unless --list-only): ctest runs with --output-junit, keeping each entry's full
   output; for every passing Catch2 entry, Catch2's own console summary must say that it ran
   as many test cases as it selected and at least one assertion ("All tests passed (N
   assertions in M test cases)"). "No tests ran", "assertions: - none -" or a missing summary
   fail. Entries that are not Catch2 binaries (the scenario scripts) are only run.
"""
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

PASSED = re.compile(r"^All tests passed \((\d+) assertions? in (\d+) test cases?\)\s*$", re.M)
NO_ASSERTIONS = re.compile(r"^assertions: - none -", re.M)
NO_TESTS = re.compile(r"^No tests ran\s*$", re.M)


def run(cmd, cwd=None):
    return subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          errors="replace")


def list_names(cmd, cwd):
    """Test case names that Catch2 would run for this command line (its exit code is the count)."""
    out = run(list(cmd) + ["--list-test-names-only"], cwd=cwd)
    if out.returncode < 0:
        raise RuntimeError(f"{cmd[0]} --list-test-names-only died with signal {-out.returncode}: {out.stderr.strip()}")
    names = []
    for line in out.stdout.splitlines():
        if not line:
            continue
        # Catch2 quotes names that start with '#' (they would read as a filename tag).
        if len(line) >= 2 and line[0] == '"' and line[-1] == '"' and line[1] == "#":
            line = line[1:-1]
        names.append(line)
    return names


def source_dir(build):
    """The source tree this build folder was configured from."""
    cache = build / "CMakeCache.txt"
    if cache.exists():
        for line in cache.read_text(errors="replace").splitlines():
            if line.startswith("CMAKE_HOME_DIRECTORY:"):
                return Path(line.split("=", 1)[1]).resolve()
    return Path(__file__).resolve().parent.parent


def test_binaries(build):
    """Catch2 test binaries, from the compile database: targets compiling a file with TEST_CASE."""
    problems = []
    root = source_dir(build)
    db = build / "compile_commands.json"
    if not db.exists():
        return {}, [f"{db} is missing (configure with CMAKE_EXPORT_COMPILE_COMMANDS)"]
    compiled = {}  # source path -> set of (folder, target)
    for entry in json.loads(db.read_text()):
        src = Path(entry["directory"], entry["file"]).resolve()
        output = entry.get("output") or re.search(r"-o (\S+)", entry.get("command", "")).group(1)
        m = re.match(r"(.*?)/?CMakeFiles/([^/]+)\.dir/", output)
        if m:
            compiled.setdefault(src, set()).add((m.group(1), m.group(2)))
    binaries = {}
    for src in sorted((root / "tests").rglob("*.cpp")):
        if not re.search(r"\bTEST_CASE(_METHOD)?\s*\(", src.read_text(errors="replace")):
            continue
        targets = compiled.get(src.resolve())
        if not targets:
            problems.append(f"{src.relative_to(root)} defines test cases but no target compiles it "
                            "(add it to its folder's CMakeLists.txt)")
            continue
        for folder, target in targets:
            binary = (build / folder / target).resolve()
            if not binary.exists():
                problems.append(f"{src.relative_to(root)}: its binary {binary} was not built")
                continue
            binaries.setdefault(str(binary), target)
    return binaries, problems


def ctest_entries(build):
    out = run(["ctest", "--show-only=json-v1"], cwd=build)
    if out.returncode != 0:
        raise RuntimeError(f"ctest --show-only failed: {out.stderr.strip()}")
    entries = []
    for t in json.loads(out.stdout)["tests"]:
        cwd = build
        for prop in t.get("properties", []):
            if prop["name"] == "WORKING_DIRECTORY":
                cwd = prop["value"]
        entries.append({"name": t["name"], "command": t.get("command", []), "cwd": cwd})
    return entries


def check_registration(build):
    binaries, problems = test_binaries(build)
    entries = ctest_entries(build)
    selected = {b: {} for b in binaries}  # binary -> test case -> entries
    catch_entries = {}
    for e in entries:
        if not e["command"]:
            problems.append(f"ctest entry '{e['name']}' has no command")
            continue
        binary = str(Path(e["command"][0]).resolve())
        if binary not in binaries:
            continue  # not a Catch2 binary (scenario scripts, smoke tests)
        names = list_names(e["command"], e["cwd"])
        catch_entries[e["name"]] = len(names)
        if not names:
            problems.append(f"ctest entry '{e['name']}' runs no test case of {binaries[binary]} "
                            f"(its arguments {e['command'][1:]} match nothing)")
        for n in names:
            selected[binary].setdefault(n, []).append(e["name"])
    total = 0
    for binary, target in sorted(binaries.items(), key=lambda kv: kv[1]):
        all_names = list_names([binary], build)
        total += len(all_names)
        if not all_names:
            problems.append(f"{target} lists no test cases")
        for n in all_names:
            if n not in selected[binary]:
                problems.append(f"{target}: test case '{n}' is run by no ctest entry")
        for n in selected[binary]:
            if n not in all_names:
                problems.append(f"{target}: ctest runs '{n}', which is not in its plain listing (hidden?)")
    print(f"check_tests: {len(binaries)} Catch2 binaries, {total} test cases, "
          f"{len(catch_entries)} Catch2 ctest entries, {len(entries) - len(catch_entries)} other entries")
    return catch_entries, problems


def check_run(build, catch_entries, ctest_args):
    junit = build / "Testing" / "check_tests.junit.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    if junit.exists():
        junit.unlink()
    jobs = str(os.cpu_count() or 2)
    # Keep every entry's whole output (Catch2's summary is its last line), not ctest's 1 KiB head.
    cmd = ["ctest", "--output-on-failure", "-j", jobs, "--output-junit", str(junit),
           "--test-output-size-passed", "10000000", "--test-output-size-failed", "10000000",
           "--test-output-truncation", "head"] + ctest_args
    print("check_tests: " + " ".join(cmd), flush=True)
    ctest = subprocess.run(cmd, cwd=build)
    problems = []
    if ctest.returncode != 0:
        problems.append(f"ctest failed (exit {ctest.returncode})")
    if not junit.exists():
        return problems + [f"ctest wrote no {junit}"]
    ran = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        out = case.find("system-out")
        ran[case.get("name")] = (case.get("status"), (out.text or "") if out is not None else "")
    filtered = bool(ctest_args)
    for name, selected in sorted(catch_entries.items()):
        if name not in ran:
            if not filtered:
                problems.append(f"ctest entry '{name}' did not run")
            continue
        status, output = ran[name]
        if status != "run":
            continue  # a failure ctest already reported above
        m = None
        for m in PASSED.finditer(output):
            pass
        if m and int(m.group(1)) > 0 and int(m.group(2)) == selected:
            continue
        if m:
            why = f"Catch2 ran {m.group(2)} test case(s) with {m.group(1)} assertion(s), expected {selected} case(s)"
        elif NO_TESTS.search(output):
            why = "Catch2 ran no test case"
        elif NO_ASSERTIONS.search(output):
            why = "its test case ran no assertion"
        else:
            why = "no Catch2 summary in its output"
        problems.append(f"ctest entry '{name}' passed but {why}")
    return problems


def main(argv):
    list_only = False
    if argv and argv[0] == "--list-only":
        list_only, argv = True, argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    build = Path(argv[0]).resolve()
    catch_entries, problems = check_registration(build)
    if not list_only:
        problems += check_run(build, catch_entries, argv[1:])
    for p in problems:
        print("check_tests: FAIL " + p, file=sys.stderr)
    if problems:
        return 1
    print(f"check_tests: OK, every Catch2 test case is a ctest entry"
          + ("" if list_only else " that ran it with at least one assertion"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
