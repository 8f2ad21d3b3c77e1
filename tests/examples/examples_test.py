#!/usr/bin/env python3
"""The examples, built from an installed Tandem and run against a real `tandem server`.

    python3 examples_test.py BUILD_DIR SOURCE_DIR

1. `cmake --install BUILD_DIR --prefix TMP/prefix` (a temporary directory, not the build tree).
2. examples/todo configured with find_package(Tandem) against that prefix and built, once
   on libtandem.so and once on libtandem.a; a C program built with `pkg-config --cflags
   --libs tandem` against it too.
3. The installed `tandem server` on a loopback port, a token from the installed `tandem token`.
4. Device A (the C++ todo) adds an item; device B (examples/python/todo.py, the ctypes
   binding from the prefix) waits for it, adds another; A (the static build) lists both,
   then (the shared one) marks one done.
Every step's output is checked; the first failure exits 1 with the outputs so far.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

build_dir, source_dir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
tmp = tempfile.mkdtemp(prefix="tandem-examples-")
prefix = os.path.join(tmp, "prefix")
checks = 0


def fail(message):
    print("FAILED: " + message)
    print("(kept " + tmp + ")")
    sys.exit(1)


def run(cmd, env=None, timeout=300):
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        fail("%s exited %d:\n%s" % (" ".join(cmd), out.returncode, out.stdout))
    return out.stdout


def check(condition, message, output=""):
    global checks
    checks += 1
    if not condition:
        fail(message + "\n" + output)


# 1-2. Install, then build the consumers against the prefix only.
run(["cmake", "--install", build_dir, "--prefix", prefix])
libdirs = [d for d in ("lib", "lib64") if os.path.exists(os.path.join(prefix, d, "cmake", "Tandem"))]
check(len(libdirs) == 1, "no lib*/cmake/Tandem in the prefix")
libdir = os.path.join(prefix, libdirs[0])
for path in ("include/tandem/tandem.h", "include/tandem/tandem.hpp", "bin/tandem"):
    check(os.path.exists(os.path.join(prefix, path)), "not installed: " + path)
check(os.path.exists(os.path.join(libdir, "libtandem.a")), "libtandem.a not installed")
check(os.path.exists(os.path.join(libdir, "libtandem.so.0")), "libtandem.so.0 not installed")
# The shared library exports the public API only.
symbols = run(["nm", "-D", "--defined-only", "-C", os.path.join(libdir, "libtandem.so.0")])
check("tandem_db_open" in symbols and "tandem::api::Database::open" in symbols, "public API not exported", symbols[:2000])
check("tandem::Store" not in symbols and "tandem::Node::" not in symbols, "internal symbols exported", symbols[:2000])

todo_build = os.path.join(tmp, "todo-build")
configure = ["cmake", "-S", os.path.join(source_dir, "examples", "todo"), "-B", todo_build, "-G", "Ninja",
             "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_PREFIX_PATH=" + prefix]
if os.environ.get("CMAKE_CXX_COMPILER_LAUNCHER"):
    configure.append("-DCMAKE_CXX_COMPILER_LAUNCHER=" + os.environ["CMAKE_CXX_COMPILER_LAUNCHER"])
run(configure)
run(["cmake", "--build", todo_build])
todo = os.path.join(todo_build, "todo")
check(prefix in run(["readelf", "-d", todo]), "todo is not linked against the installed library")
# The same against libtandem.a (find_package(Tandem COMPONENTS static) finds its Debian packages).
static_build = os.path.join(tmp, "todo-static-build")
run([a.replace(todo_build, static_build) for a in configure] + ["-DTODO_STATIC=ON"])
run(["cmake", "--build", static_build])
todo_static = os.path.join(static_build, "todo")
check("libtandem" not in run(["ldd", todo_static]), "the static todo needs libtandem.so")

env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))
flags = run(["pkg-config", "--cflags", "--libs", "tandem"], env=env).split()
hello = os.path.join(tmp, "hello.c")
with open(hello, "w") as f:
    f.write('#include <stdio.h>\n#include <tandem/tandem.h>\n'
            'int main(void) { tandem_db* db = 0; int c = tandem_db_open(0, &db);\n'
            '  printf("%s %s\\n", tandem_code_name(c), tandem_last_error()); return db != 0; }\n')
run(["cc", "-o", os.path.join(tmp, "hello"), hello] + flags + ["-Wl,-rpath," + libdir])
hello_out = run([os.path.join(tmp, "hello")])
check(hello_out.startswith("invalid_argument tandem_db_open: options is NULL"), "pkg-config C program", hello_out)

# 3. A server and a token from the installed binary.
tandem = os.path.join(prefix, "bin", "tandem")
secret = os.path.join(tmp, "secret")
with open(secret, "w") as f:
    f.write("examples-test-secret-0123456789abcdef0123456789\n")
server = subprocess.Popen([tandem, "server", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "server"),
                           "--secret-file", secret], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    line = server.stdout.readline()
    m = re.match(r"listening on (ws://127\.0\.0\.1:\d+)", line)
    check(m is not None, "the server did not start", line)
    url = m.group(1) + "/sync"
    token = run([tandem, "token", "--secret-file", secret, "--user", "alice"]).split("\n")[0]
    sync = ["--server", url, "--token", token]

    # 4. Device A adds, device B (Python) sees it and adds, A sees both and marks one done.
    a = run([todo, "--db", os.path.join(tmp, "a.db")] + sync + ["add", "buy milk"])
    check(re.search(r"^view: \[ \] \d+ buy milk$", a, re.M) is not None, "A's live view lacks the item", a)
    check(re.search(r"^final: \[ \] \d+ buy milk$", a, re.M) is not None, "A's final list lacks the item", a)
    check("sync: online=1 pending=0" in a, "A is not fully synced", a)

    py_env = dict(os.environ, PYTHONPATH=os.path.join(libdir, "python3", "dist-packages"))
    py_env.pop("TANDEM_LIBRARY", None)
    b = run([sys.executable, os.path.join(source_dir, "examples", "python", "todo.py"), "--db", os.path.join(tmp, "b.db"),
             "--expect", "buy milk"] + sync + ["add", "walk the dog"], env=py_env)
    check(re.search(r"^view: .*'buy milk'", b, re.M) is not None, "B's live view never showed A's item", b)
    check(re.search(r"^final: \[ \] \d+ walk the dog$", b, re.M) is not None, "B's final list lacks its item", b)
    check(re.search(r"^final: \[ \] \d+ buy milk$", b, re.M) is not None, "B's final list lacks A's item", b)
    check("sync: online=1 pending=0" in b, "B is not fully synced", b)

    a2 = run([todo_static, "--db", os.path.join(tmp, "a.db")] + sync + ["list"])
    check(re.search(r"^final: \[ \] \d+ walk the dog$", a2, re.M) is not None, "A never got B's item", a2)
    milk = re.search(r"^final: \[ \] (\d+) buy milk$", a2, re.M)
    check(milk is not None, "A lost its item", a2)
    a3 = run([todo, "--db", os.path.join(tmp, "a.db")] + sync + ["done", milk.group(1)])
    check(re.search(r"^final: \[x\] \d+ buy milk$", a3, re.M) is not None, "the item is not done", a3)
    check(re.search(r"^view: \[x\] \d+ buy milk$", a3, re.M) is not None, "the live view never showed it done", a3)
finally:
    server.terminate()
    server.wait(timeout=10)

shutil.rmtree(tmp, ignore_errors=True)
print("examples: %d checks passed" % checks)
