// A real varnishd for integration tests, in front of an origin on loopback:
// its own free loopback port, its own -n working directory under /tmp, the
// VCL of tests/varnish/catalog.vcl with the origin's address written in.
// Started in the foreground (-F) as a child process, stopped with it.
//
// As root, varnishd drops privileges for its compiler and worker (the unix
// jail): the working directory must be readable by the varnish user, hence
// 0755 rather than mkdtemp's 0700. Startup compiles the VCL: about 3 s.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "free_port.hpp"
#include "process.hpp"
#include "server_required.hpp"

namespace ccp_test {

// One HTTP/1.1 exchange over a fresh loopback connection: `request` as is
// (it should say Connection: close), the whole answer back; empty when the
// connection failed. Every step within `timeout`.
inline std::string raw_http(std::uint16_t port, std::string const& request,
                            std::chrono::milliseconds timeout = std::chrono::milliseconds(2000)) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  std::string answer;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    char chunk[4096];
    for (ssize_t n; (n = ::recv(fd, chunk, sizeof chunk, 0)) > 0;) answer.append(chunk, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return answer;
}

class varnish_server {
public:
  // On `port` when given (a port a backend was already told), else on a
  // free one.
  explicit varnish_server(std::uint16_t origin_port, std::uint16_t port = 0)
      : program_(require_program("varnishd", "varnish")), origin_port_(origin_port) {
    require_xkey();
    char tmpl[] = "/tmp/ccp-varnish-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    ::chmod(tmpl, 0755); // see above: the jailed varnish user must enter it
    write_vcl();
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = port != 0 ? port : free_loopback_port();
      process_ = std::make_unique<child_process>(std::vector<std::string>{
          program_, "-F", "-n", (dir_ / "n").string(), "-a", "127.0.0.1:" + std::to_string(port_), "-f",
          (dir_ / "catalog.vcl").string(), "-s", "malloc,32m", "-T", "none", "-p", "vsl_space=1M"});
      if (wait_until_ready()) return;
      process_.reset(); // most likely the port was taken meanwhile: another one
    }
    throw std::runtime_error("varnishd did not start (its messages are on stderr above)");
  }
  varnish_server(varnish_server const&) = delete;
  varnish_server& operator=(varnish_server const&) = delete;
  ~varnish_server() {
    process_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::uint16_t port() const { return port_; }
  // The member URL for the origin's composite backend.
  std::string backend_url() const { return "varnish://127.0.0.1:" + std::to_string(port_); }
  bool running() const { return process_ != nullptr && process_->running(); }

  // PURGE / with xkey-purge (or xkey-softpurge) as varnish_backend sends it;
  // the whole answer.
  std::string purge(std::string const& key, bool soft = false) const {
    return raw_http(port_, std::string("PURGE / HTTP/1.1\r\nHost: 127.0.0.1\r\n") +
                               (soft ? "xkey-softpurge: " : "xkey-purge: ") + key + "\r\nConnection: close\r\n\r\n");
  }

private:
  static void require_xkey() {
    for (char const* dir : {"/usr/lib/x86_64-linux-gnu/varnish/vmods", "/usr/lib/aarch64-linux-gnu/varnish/vmods",
                            "/usr/lib/varnish/vmods", "/usr/local/lib/varnish/vmods"})
      if (std::filesystem::exists(std::filesystem::path(dir) / "libvmod_xkey.so")) return;
    std::string const message = "Varnish's xkey vmod is not installed (Debian package varnish-modules)";
    if (running_under_ci()) throw std::runtime_error(message + ": under CI a missing server is a failure");
    std::fprintf(stderr, "SKIPPED: %s\n", message.c_str());
    std::fflush(stderr);
    std::_Exit(77);
  }

  void write_vcl() const {
#ifdef CCP_VARNISH_VCL
    std::ifstream in(CCP_VARNISH_VCL);
#else
    std::ifstream in;
#endif
    if (!in) throw std::runtime_error("cannot read tests/varnish/catalog.vcl (CCP_VARNISH_VCL)");
    std::stringstream text;
    text << in.rdbuf();
    std::string vcl = text.str();
    replace(vcl, "\"ORIGIN_HOST\"", "\"127.0.0.1\"");
    replace(vcl, "\"ORIGIN_PORT\"", "\"" + std::to_string(origin_port_) + "\"");
    std::ofstream(dir_ / "catalog.vcl") << vcl;
  }

  static void replace(std::string& text, std::string_view from, std::string const& to) {
    auto const at = text.find(from);
    if (at == std::string::npos) throw std::runtime_error("catalog.vcl has no " + std::string(from));
    text.replace(at, from.size(), to);
  }

  // Ready once a purge of a key nothing carries is answered 200 (the VCL
  // is compiled and loaded); false when varnishd exits first.
  bool wait_until_ready() {
    auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      if (!process_->running()) return false;
      if (purge("ccp-readiness-probe").starts_with("HTTP/1.1 200")) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  std::string program_;
  std::uint16_t origin_port_;
  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  std::unique_ptr<child_process> process_;
};

} // namespace ccp_test
