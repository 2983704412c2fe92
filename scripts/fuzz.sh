#!/usr/bin/env bash
# Builds the fuzz preset and runs every libFuzzer target over its seed
# corpus (tests/fuzz/corpus/<target>) for SECONDS each (default 20), two
# at a time. New inputs go to a scratch directory; a finding leaves its
# input in build/fuzz/findings/ and fails the run.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(entry request surrogates config engine)

cmake --preset fuzz > /dev/null
cmake --build --preset fuzz --target ccp_fuzz

findings=build/fuzz/findings
mkdir -p "${findings}"
scratch=$(mktemp -d)
trap 'rm -rf "${scratch}"' EXIT

run() {
  local target=$1
  mkdir -p "${scratch}/${target}"
  # -timeout: an input that takes over 10 s is a finding (a stall).
  if CCP_FUZZ_TARGET=${target} build/fuzz/tests/fuzz/ccp_fuzz -max_total_time="${seconds}" -timeout=10 \
       -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="${findings}/${target}-" \
       "${scratch}/${target}" "tests/fuzz/corpus/${target}" > "${scratch}/${target}.log" 2>&1; then
    echo "fuzz ${target}: $(grep -E '^stat::number_of_executed_units' "${scratch}/${target}.log" | awk '{print $2}') executions in ${seconds} s, no finding"
  else
    echo "fuzz ${target}: FINDING (input in ${findings}/)" >&2
    tail -40 "${scratch}/${target}.log" >&2
    return 1
  fi
}

status=0
pids=()
for target in "${targets[@]}"; do
  run "${target}" &
  pids+=($!)
  if [ ${#pids[@]} -eq 2 ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[1]}")
  fi
done
for pid in "${pids[@]}"; do wait "${pid}" || status=1; done
exit ${status}
