#!/usr/bin/env bash
# Installs what is missing; compiles the documentation's blocks, the demo
# and the benchmarks (dev); runs the unit and integration tests (real
# redis-server, varnishd and the demo) under asan+ubsan, the unit tests
# under tsan; runs each libFuzzer target for 20 s; then installs the library
# and builds an out-of-tree consumer.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh

# dev compiles, warnings as errors, what the sanitizer presets do not: the
# documentation's code blocks and the benchmarks (asan builds the demo, for
# the integration suite). The unit tests run under asan and tsan, the
# integration suite once, under asan.
echo "=== preset dev: configure, build, test (documentation, examples, benchmarks) ==="
# No debug information here: nothing built in dev is run under a debugger.
cmake --preset dev -DCUSTOM_CACHE_PAGE_INTEGRATION_TESTS=OFF -DCMAKE_CXX_FLAGS_DEBUG=-g0
cmake --build --preset dev --target ccp_compile_checks
ctest --preset dev -R '^docs:'

echo "=== preset asan: configure, build, test (unit and integration tests) ==="
cmake --preset asan -DCUSTOM_CACHE_PAGE_INTEGRATION_TESTS=ON
cmake --build --preset asan
ctest --preset asan

# ThreadSanitizer over the unit tests: the concurrency, budget and
# memory backend tests run threads against one backend.
echo "=== preset tsan: configure, build, test (unit tests) ==="
# The fuzz executable (one source, one compiler) is built meanwhile, on
# the core that the last unity batch of the unit tests leaves idle; it is
# done before any test runs.
cmake --preset fuzz > /dev/null
cmake --build --preset fuzz --target ccp_fuzz -j 1 > build/fuzz-build.log 2>&1 &
fuzz_build=$!
cmake --preset tsan
cmake --build --preset tsan --target ccp_unit_tests
if ! wait "${fuzz_build}"; then cat build/fuzz-build.log >&2; exit 1; fi
ctest --preset tsan -R '^unit:'

# libFuzzer (clang): each target over its seed corpus, 20 s, two at a time.
echo "=== preset fuzz: configure, build, run each target 20 s ==="
bash scripts/fuzz.sh 20

echo "=== install + find_package consumer ==="
prefix=$(mktemp -d)
consumer_build=$(mktemp -d)
trap 'rm -rf "${prefix}" "${consumer_build}"' EXIT
cmake --install build/dev --prefix "${prefix}"
# Unoptimised: what it checks is finding, compiling and linking the package.
cmake -S tests/consumer -B "${consumer_build}" -DCMAKE_PREFIX_PATH="${prefix}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-g0
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
