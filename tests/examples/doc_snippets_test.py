#!/usr/bin/env python3
"""Every cpp, c and python block of a markdown page compiles against the public headers.

    python3 doc_snippets_test.py PAGE.md INCLUDE_DIR

A cpp block is a translation unit compiled as C++17, a c block one compiled as C99 (both
with -Wall -Wextra -Werror and only INCLUDE_DIR on the include path: the public API, nothing
internal); a python block is byte-compiled. Fails (exit 1) on the first error, or when the
page has no block of one of these kinds.
"""
import os
import re
import subprocess
import sys
import tempfile

page, include = sys.argv[1], os.path.abspath(sys.argv[2])
text = open(page, encoding="utf-8").read()
blocks = re.findall(r"^```(\w+)\n(.*?)^```", text, re.S | re.M)
compilers = {
    "cpp": (".cpp", ["c++", "-std=c++17"]),
    "c": (".c", ["cc", "-std=c99", "-pedantic"]),
}
counts = {"cpp": 0, "c": 0, "python": 0}
with tempfile.TemporaryDirectory(prefix="tandem-snippets-") as tmp:
    for n, (lang, body) in enumerate(blocks):
        if lang == "python":
            try:
                compile(body, "%s block %d" % (page, n), "exec")
            except SyntaxError as e:
                sys.exit("python block %d does not compile: %s" % (n, e))
            counts[lang] += 1
        elif lang in compilers:
            ext, cmd = compilers[lang]
            path = os.path.join(tmp, "block%d%s" % (n, ext))
            with open(path, "w") as f:
                f.write(body)
            out = subprocess.run(cmd + ["-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-I", include, path],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if out.returncode != 0:
                sys.exit("%s block %d does not compile:\n%s\n%s" % (lang, n, body, out.stdout))
            counts[lang] += 1
missing = [lang for lang, c in counts.items() if c == 0]
if missing:
    sys.exit("no %s block found in %s" % (", ".join(missing), page))
print("snippets: %d cpp, %d c, %d python blocks compile" % (counts["cpp"], counts["c"], counts["python"]))
