// An environment variable set for the lifetime of a scope.
#pragma once

#include <cstdlib>

namespace ccp_test {

class scoped_env {
public:
  scoped_env(char const* name, char const* value) : name_(name) { ::setenv(name, value, 1); }
  scoped_env(scoped_env const&) = delete;
  scoped_env& operator=(scoped_env const&) = delete;
  ~scoped_env() { ::unsetenv(name_); }

private:
  char const* name_;
};

} // namespace ccp_test
