// A child process for tests: spawned with posix_spawn, its stdout readable
// line by line, terminated (SIGTERM, then SIGKILL) when the handle dies.
#pragma once

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace ccp_test {

class child_process {
public:
  // Starts `argv[0]` (looked up in PATH). With capture_stdout the child's
  // stdout is a pipe read by read_line(); otherwise it goes to /dev/null.
  explicit child_process(std::vector<std::string> argv, bool capture_stdout = false) {
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    int fds[2] = {-1, -1};
    if (capture_stdout) {
      if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
      posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    } else {
      posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    }
    int rc = ::posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (capture_stdout) {
      ::close(fds[1]);
      out_fd_ = fds[0];
    }
    if (rc != 0) {
      if (out_fd_ >= 0) ::close(out_fd_);
      throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
    }
  }

  child_process(child_process const&) = delete;
  child_process& operator=(child_process const&) = delete;
  ~child_process() { stop(); }

  pid_t pid() const { return pid_; }

  // Reads one line of the child's stdout, or nothing when the deadline passes
  // or the child closes it.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto pos = buffer_.find('\n'); pos != std::string::npos) {
        std::string line = buffer_.substr(0, pos);
        buffer_.erase(0, pos + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || out_fd_ < 0) return std::nullopt;
      pollfd p{out_fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[512];
      auto n = ::read(out_fd_, chunk, sizeof chunk);
      if (n <= 0) return std::nullopt;
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  // Sends `sig` and reaps the child; SIGKILL if it has not gone within 5 s.
  void stop(int sig = SIGTERM) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    for (int i = 0; i < 500; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (out_fd_ >= 0) {
      ::close(out_fd_);
      out_fd_ = -1;
    }
  }

  bool running() const { return pid_ > 0 && ::kill(pid_, 0) == 0; }

private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
};

} // namespace ccp_test
