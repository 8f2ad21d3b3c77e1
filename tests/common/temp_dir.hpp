// The tests' one temporary directory: a fresh directory under /tmp, removed with everything
// in it when the scope ends. TANDEM_KEEP_TEST_DIRS=1 keeps it (logs, databases) for a
// post-mortem.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace tandem::test {

struct TempDir {
  std::string path;

  TempDir() {
    std::string tmpl = "/tmp/tandem-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("cannot create a directory under /tmp");
    path = tmpl;
  }
  ~TempDir() {
    if (std::getenv("TANDEM_KEEP_TEST_DIRS") != nullptr) return;
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

}  // namespace tandem::test
