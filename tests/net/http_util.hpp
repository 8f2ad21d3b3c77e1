// Plain HTTP against the real server in the process tests (tests/net/metrics_process_test.cpp,
// tests/net/status_page_process_test.cpp): one GET over a raw socket, optionally from a given
// local address, this host's non-loopback address, and a server on any listen address.
#pragma once

#include <ifaddrs.h>
#include <net/if.h>
#include <sys/time.h>

#include <string>
#include <vector>

#include "tests/net/process_util.hpp"

namespace tandem_process_test {

struct HttpAnswer {
  int status = 0;  // 0: no answer
  std::string headers, body;
};

// One HTTP/1.1 GET from `from` (a local address, "" for any) to host:port; reads until the
// server closes (it always does), bounded by a 10 s receive timeout.
inline HttpAnswer http_get(const std::string& host, uint16_t port, const std::string& target,
                    const std::string& authorization = "", const std::string& from = "") {
  HttpAnswer a;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (!from.empty()) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    REQUIRE(::inet_pton(AF_INET, from.c_str(), &local.sin_addr) == 1);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0);
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  REQUIRE(::inet_pton(AF_INET, host.c_str(), &to.sin_addr) == 1);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n";
  if (!authorization.empty()) req += "Authorization: " + authorization + "\r\n";
  req += "\r\n";
  REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  std::string raw;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t split = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || split == std::string::npos) return a;
  a.status = std::stoi(raw.substr(9, 3));
  a.headers = raw.substr(0, split);
  a.body = raw.substr(split + 4);
  return a;
}

// This host's first IPv4 address that is not loopback, if it has one: a peer address the
// server must treat as remote.
inline std::string non_loopback_address() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return "";
  std::string found;
  for (ifaddrs* i = list; i != nullptr && found.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP))
      continue;
    char text[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
    found = text;
  }
  ::freeifaddrs(list);
  return found;
}

// Starts a server on `listen_host` with `extra` options; sets w.server, w.url and w.port.
inline void start_server(World& w, const std::string& listen_host, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{kTandem, "server", "--listen", listen_host + ":0", "--data-dir", w.dir / "server",
                                "--secret-file", w.secret, "--log-level", "info"};
  args.insert(args.end(), extra.begin(), extra.end());
  w.server = std::make_unique<Process>(args, w.dir / "server.log");
  auto line = w.server->line();
  REQUIRE(line);
  REQUIRE(line->rfind("listening on ws://", 0) == 0);
  w.port = static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
  w.url = "ws://127.0.0.1:" + std::to_string(w.port) + "/sync";
}


}  // namespace tandem_process_test
