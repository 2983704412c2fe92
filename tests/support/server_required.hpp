// What a test does when a server program it needs is not installed: under
// CI=true that is a failure; elsewhere the test executable exits 77, which
// CTest reports as skipped (SKIP_RETURN_CODE 77).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include <unistd.h>

namespace ccp_test {

inline bool running_under_ci() {
  char const* ci = std::getenv("CI");
  return ci != nullptr && std::strcmp(ci, "true") == 0;
}

inline std::string find_program(char const* name) {
  for (char const* dir : {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
    std::string path = std::string(dir) + "/" + name;
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return {};
}

// Returns the program's path, or fails (CI) / exits 77 (elsewhere).
inline std::string require_program(char const* name, char const* package) {
  std::string path = find_program(name);
  if (!path.empty()) return path;
  std::string message = std::string(name) + " is not installed (Debian package " + package +
                        "; scripts/setup-debian.sh installs it)";
  if (running_under_ci()) throw std::runtime_error(message + ": under CI a missing server is a failure");
  std::fprintf(stderr, "SKIPPED: %s\n", message.c_str());
  std::fflush(stderr);
  std::_Exit(77);
}

} // namespace ccp_test
