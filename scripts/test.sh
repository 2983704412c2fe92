#!/usr/bin/env bash
# Installs what is missing, builds the dev and asan presets, runs the unit
# tests in both and the integration tests (real redis-server, varnishd and
# the demo) once, under asan; the unit tests under tsan; then installs the
# library and builds an out-of-tree consumer.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh

# dev builds everything but the integration suite, which runs once, in asan.
echo "=== preset dev: configure, build, test (unit tests, documentation) ==="
cmake --preset dev -DCUSTOM_CACHE_PAGE_INTEGRATION_TESTS=OFF
cmake --build --preset dev
ctest --preset dev

echo "=== preset asan: configure, build, test (unit and integration tests) ==="
cmake --preset asan -DCUSTOM_CACHE_PAGE_INTEGRATION_TESTS=ON
cmake --build --preset asan
ctest --preset asan

# ThreadSanitizer over the unit tests: the concurrency, budget and
# memory backend tests run threads against one backend.
echo "=== preset tsan: configure, build, test (unit tests) ==="
cmake --preset tsan
cmake --build --preset tsan --target ccp_unit_tests
ctest --preset tsan -R '^unit:'

echo "=== install + find_package consumer ==="
prefix=$(mktemp -d)
consumer_build=$(mktemp -d)
trap 'rm -rf "${prefix}" "${consumer_build}"' EXIT
cmake --install build/dev --prefix "${prefix}"
cmake -S tests/consumer -B "${consumer_build}" -DCMAKE_PREFIX_PATH="${prefix}" -DCMAKE_BUILD_TYPE=Release
cmake --build "${consumer_build}" -j 2
"${consumer_build}/consumer"
"${consumer_build}/cdn_consumer"
# custom_cache_page::cdn links Debian's compiled Boost.JSON: the executable
# and its shared library (cdn_plugin) must both load libboost_json.
for binary in "${consumer_build}/cdn_consumer" "${consumer_build}/libcdn_plugin.so"; do
  if ! json_line=$(ldd "${binary}" | grep libboost_json); then
    echo "FAIL: ${binary} does not load libboost_json (custom_cache_page::cdn must link Boost::json)" >&2
    ldd "${binary}" >&2
    exit 1
  fi
  echo "$(basename "${binary}"): ${json_line}"
done
echo "=== all tests passed ==="
