#!/usr/bin/env python3
"""Differential test: random workloads through `tandem scenario` and through cr-sqlite 0.16.

Every workload (workload.py, one per seed) runs through Tandem's real scenario runner and
through the reference in ../shared/oracle (cr-sqlite 0.16 itself, compiled to wasm, under
Node). Each replica's tables, the failed steps and convergence must be identical.

  differential.py --tandem BIN --oracle-src DIR --work DIR [--runs N] [--first-seed S]
  differential.py --tandem BIN --oracle-src DIR --work DIR --scenario FILE...   (given files)

--runs defaults to $TANDEM_ORACLE_RUNS, else 40 (the CI default); seeds are first-seed ..
first-seed + runs - 1. The reference is copied into WORK/oracle and its npm dependencies are
installed there (once; shared/ is read-only in CI). Node or npm missing, or the reference
missing, is a failure, never a skip. A discrepancy prints its seed, the scenario file and a
reduced scenario (steps removed while the discrepancy stays) under WORK/failures/.
"""
import argparse
import concurrent.futures
import filecmp
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def fail(message):
    print("differential: " + message, file=sys.stderr)
    sys.exit(1)


def prepare_oracle(src, work):
    """A writable copy of the reference with its npm dependencies, in WORK/oracle."""
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            fail(f"{tool} not found: install nodejs and npm (scripts/setup.sh lists them)")
    if not os.path.isfile(os.path.join(src, "oracle.mjs")):
        fail(f"the cr-sqlite reference is missing: no oracle.mjs in {src}")
    dest = os.path.join(work, "oracle")
    os.makedirs(dest, exist_ok=True)
    fresh = True
    for name in ("oracle.mjs", "package.json", "package-lock.json"):
        s, d = os.path.join(src, name), os.path.join(dest, name)
        if not os.path.isfile(s):
            continue
        if not (os.path.isfile(d) and filecmp.cmp(s, d, shallow=False)):
            shutil.copyfile(s, d)
            os.chmod(d, 0o644)
            fresh = False
    marker = os.path.join(dest, "node_modules", "@vlcn.io", "crsqlite-wasm", "package.json")
    if not fresh or not os.path.isfile(marker):
        install = ["npm", "ci"] if os.path.isfile(os.path.join(dest, "package-lock.json")) else ["npm", "install"]
        run = subprocess.run(install + ["--no-audit", "--no-fund"], cwd=dest, capture_output=True, text=True,
                             timeout=600)
        if run.returncode != 0 or not os.path.isfile(marker):
            fail(f"`{' '.join(install)}` in {dest} failed:\n{run.stdout}\n{run.stderr}")
    return dest


def run_tandem(binary, path):
    run = subprocess.run([binary, "scenario", path], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        return None, f"tandem scenario exited {run.returncode}: {run.stderr.strip()}"
    return json.loads(run.stdout), None


def run_oracle(oracle_dir, paths):
    """Runs the reference on every file in one Node process; returns {path: report}."""
    out = {}
    for i in range(0, len(paths), 250):
        chunk = paths[i:i + 250]
        run = subprocess.run(["node", os.path.join(HERE, "batch.mjs"), oracle_dir] + chunk, capture_output=True,
                             text=True, timeout=1800)
        if run.returncode != 0:
            fail(f"the reference failed: {run.stderr.strip()}")
        for p in chunk:
            with open(p[:-len(".json")] + ".oracle.json") as f:
                out[p] = json.load(f)
    return out


def run_changes(tool, path):
    if not tool:
        return None, None
    run = subprocess.run([tool, path], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        return None, f"{tool} exited {run.returncode}: {run.stderr.strip()}"
    return json.loads(run.stdout), None


def canonical(v):
    """A JSON value with REALs as floats (Node prints the real 2.0 as 2)."""
    if isinstance(v, dict):
        return {k: float(x) if k == "real" and isinstance(x, (int, float)) else canonical(x) for k, x in v.items()}
    if isinstance(v, list):
        return [canonical(x) for x in v]
    return v


def change_rows(changes):
    """The comparable fields of change rows, in a canonical order."""
    rows = [json.dumps(canonical([c["table"], c["pk"], c["cid"], c["val"], c["col_version"], c["cl"]]), sort_keys=True)
            for c in changes]
    return sorted(rows)


def discrepancies(tandem, oracle, changes=None, must_converge=True):
    """What differs between the reports, as readable lines (empty: identical). Random
    workloads end with a full sync and must converge; a given scenario need not."""
    diffs = []
    if changes is not None:
        for name, rep in oracle["replicas"].items():
            mine = change_rows(changes["replicas"].get(name, {}).get("changes", []))
            theirs = change_rows(rep["changes"])
            if mine != theirs:
                only_t = sorted(set(mine) - set(theirs))
                only_o = sorted(set(theirs) - set(mine))
                diffs.append(f"replica {name} change rows (table, pk, cid, val, col_version, cl):\n"
                             f"  only in tandem    {only_t[:6]}\n  only in cr-sqlite {only_o[:6]}")
    if must_converge and not tandem["converged"]:
        diffs.append("Tandem's replicas did not converge")
    if must_converge and not oracle["converged"]:
        diffs.append("cr-sqlite's replicas did not converge")
    if tandem["converged"] != oracle["converged"]:
        diffs.append(f"converged: tandem {tandem['converged']}, cr-sqlite {oracle['converged']}")
    t_err = sorted((e["step"], e.get("replica")) for e in tandem.get("errors", []))
    o_err = sorted((e["step"], e.get("replica")) for e in oracle.get("errors", []))
    if t_err != o_err:
        diffs.append(f"failed steps differ: tandem {tandem.get('errors')} cr-sqlite {oracle.get('errors')}")
    for name, rep in oracle["replicas"].items():
        mine = tandem["replicas"].get(name)
        if mine is None:
            diffs.append(f"replica {name} missing from Tandem's report")
            continue
        for table, dump in rep["tables"].items():
            got = mine["tables"].get(table)
            if got != dump:
                diffs.append(f"replica {name} table {table}:\n  tandem    {json.dumps(got)}\n  cr-sqlite {json.dumps(dump)}")
    return diffs


def reduce(binary, tool, oracle_dir, scenario, path):
    """Removes steps (and statements of a step) while Tandem and the reference still differ."""
    def differs(candidate):
        with open(path, "w") as f:
            json.dump(candidate, f, indent=1)
        t, err = run_tandem(binary, path)
        c, err2 = run_changes(tool, path)
        if err or err2:
            return True
        o = run_oracle(oracle_dir, [path])[path]
        # Removing steps can remove the final sync: convergence must then only agree.
        return bool(discrepancies(t, o, c, must_converge=False))

    best = json.loads(json.dumps(scenario))
    budget = 300
    chunk = max(1, len(best["steps"]) // 2)
    while chunk >= 1 and budget > 0:
        i, removed = 0, False
        while i < len(best["steps"]) and budget > 0:
            candidate = dict(best, steps=best["steps"][:i] + best["steps"][i + chunk:])
            budget -= 1
            if differs(candidate):
                best, removed = candidate, True
            else:
                i += chunk
        if not removed:
            chunk //= 2
    # Then statements inside the transactions that are left (the first keeps any params).
    for i in range(len(best["steps"])):
        step = best["steps"][i]
        if not isinstance(step.get("sql"), list):
            continue
        k = 1 if "params" in step else 0
        while k < len(best["steps"][i]["sql"]) and len(best["steps"][i]["sql"]) > 1 and budget > 0:
            current = best["steps"][i]
            candidate_step = dict(current, sql=current["sql"][:k] + current["sql"][k + 1:])
            candidate = dict(best, steps=best["steps"][:i] + [candidate_step] + best["steps"][i + 1:])
            budget -= 1
            if differs(candidate):
                best = candidate
            else:
                k += 1
    with open(path, "w") as f:
        json.dump(best, f, indent=1)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tandem", required=True)
    ap.add_argument("--oracle-src", required=True)
    ap.add_argument("--changes-tool", help="oracle_changes_dump: also compare change rows")
    ap.add_argument("--work", required=True)
    ap.add_argument("--runs", type=int, default=int(os.environ.get("TANDEM_ORACLE_RUNS", "40")))
    ap.add_argument("--first-seed", type=int, default=int(os.environ.get("TANDEM_ORACLE_FIRST_SEED", "1")))
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("TANDEM_ORACLE_JOBS", "2")))
    ap.add_argument("--scenario", nargs="*", help="compare these scenario files instead of random workloads")
    ap.add_argument("--no-reduce", action="store_true")
    args = ap.parse_args()

    if not os.access(args.tandem, os.X_OK):
        fail(f"no tandem binary at {args.tandem}")
    os.makedirs(args.work, exist_ok=True)
    oracle_dir = prepare_oracle(os.path.abspath(args.oracle_src), os.path.abspath(args.work))
    scenarios_dir = os.path.join(args.work, "given" if args.scenario else "workloads")
    os.makedirs(scenarios_dir, exist_ok=True)

    cases = []  # (label, seed or None, scenario, path)
    if args.scenario:
        for i, src in enumerate(args.scenario):
            with open(src) as f:
                doc = json.load(f)
            # The reference has no live queries; a note keeps the step numbers of errors.
            doc["steps"] = [{"op": "note", "note": "watch"} if s.get("op") == "watch" else s for s in doc["steps"]]
            path = os.path.join(scenarios_dir, f"given-{i}-{os.path.basename(src)}")
            with open(path, "w") as f:
                json.dump(doc, f, indent=1)
            cases.append((src, None, doc, path))
    else:
        for seed in range(args.first_seed, args.first_seed + args.runs):
            doc = workload.generate(seed)
            path = os.path.join(scenarios_dir, f"seed-{seed}.json")
            with open(path, "w") as f:
                json.dump(doc, f, indent=1)
            cases.append((f"seed {seed}", seed, doc, path))

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        tandem = list(pool.map(lambda c: run_tandem(args.tandem, c[3]), cases))
        changes = list(pool.map(lambda c: run_changes(args.changes_tool, c[3]), cases))
    oracle = run_oracle(oracle_dir, [c[3] for c in cases])

    failures = reference_failures = 0
    for (label, seed, doc, path), (t, err), (c, err2) in zip(cases, tandem, changes):
        if seed is not None and not err and t["converged"] and not oracle[path]["converged"]:
            # cr-sqlite 0.16 can lose a write to its own sync cursor (docs/testing.md): its
            # replicas then differ from each other, and only Tandem's convergence is checked.
            reference_failures += 1
            print(f"REFERENCE FAILURE {label}: cr-sqlite's replicas did not converge, Tandem's did: {path}")
            continue
        diffs = [e for e in (err, err2) if e] or discrepancies(t, oracle[path], c, seed is not None)
        if not diffs:
            continue
        failures += 1
        print(f"DISCREPANCY {label}: scenario {path}")
        for d in diffs[:10]:
            print("  " + d)
        if not args.no_reduce and not err and not err2 and failures <= 3:
            os.makedirs(os.path.join(args.work, "failures"), exist_ok=True)
            name = f"seed-{seed}.min.json" if seed is not None else os.path.basename(path)[:-5] + ".min.json"
            reduced = reduce(args.tandem, args.changes_tool, oracle_dir, doc, os.path.join(args.work, "failures", name))
            print(f"  reduced reproduction: {reduced}")
            print(f"  rerun: {args.tandem} scenario {reduced}; node {oracle_dir}/oracle.mjs --pretty {reduced}")
    seeds = [c[1] for c in cases if c[1] is not None]
    what = f"seeds {seeds[0]}..{seeds[-1]}" if seeds else f"{len(cases)} scenario files"
    print(f"differential: {len(cases)} workloads ({what}), {failures} differ from cr-sqlite 0.16"
          f" ({reference_failures} where cr-sqlite itself did not converge: convergence compared only)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
