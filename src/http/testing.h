// File: http/testing.h
//
// Test kit for code that serves or calls HTTP: a real Server on 127.0.0.1
// port 0, and a raw loopback socket for the cases a well-behaved Client
// cannot produce (malformed requests, slow clients, pipelining). Tests only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "http/client.h"
#include "http/router.h"
#include "http/server.h"

namespace takt::http::testing {

// A started server on a free loopback port; nullptr (and a failed Start) is a
// test bug, reported by the caller's ASSERT.
inline std::unique_ptr<Server> StartServer(std::shared_ptr<const Router> router, ServerOptions options = {},
                                           BeforeHook before = {}, AfterHook after = {}) {
  options.address = "127.0.0.1";
  options.port = 0;
  auto server = std::make_unique<Server>(std::move(options), std::move(router));
  if (before) server->SetBeforeHook(std::move(before));
  if (after) server->SetAfterHook(std::move(after));
  if (!server->Start()) return nullptr;
  return server;
}

inline Client ClientFor(const Server& server) {
  return *Client::Create("http://127.0.0.1:" + std::to_string(server.port()));
}

// A blocking loopback TCP connection with deadline-bounded reads.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads until `needle` has arrived, the peer closed, or `timeout` passed.
  std::string ReadUntil(std::string_view needle, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (received_.find(needle) == std::string::npos && !closed_) {
      if (!ReadSome(deadline)) break;
    }
    return received_;
  }

  // Reads until the peer closes (true) or `timeout` passes (false).
  bool WaitForClose(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!closed_) {
      if (!ReadSome(deadline)) break;
    }
    return closed_;
  }

  const std::string& received() const { return received_; }

 private:
  // False when the deadline passed.
  bool ReadSome(std::chrono::steady_clock::time_point deadline) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready <= 0) return false;
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) {
      closed_ = true;  // orderly close or reset
    } else {
      received_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  int fd_ = -1;
  bool closed_ = false;
  std::string received_;
};

}  // namespace takt::http::testing
