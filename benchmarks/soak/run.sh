#!/usr/bin/env bash
# The soak, about 2 minutes: the demo under wrk (product and list pages)
# while a product is renamed every 100 ms, once on the memory backend and
# once on Redis. After every rename returns, its page must show the new
# name (a stale answer is counted); wrk must see no error and no non-2xx;
# the demo's RSS is sampled each second (start, peak, end printed).
#
# Usage: benchmarks/soak/run.sh [seconds per backend, default 50]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-50}"

bash scripts/setup-debian.sh >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release --target catalog_server >/dev/null

source benchmarks/lib.sh
start_redis

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Renames products every 100 ms until `deadline`; prints "renames stale".
rename_loop() {
  local port=$1 deadline=$2 renames=0 stale=0 id name got
  while [ "$(date +%s)" -lt "${deadline}" ]; do
    id=$((renames % 40 + 1))
    name="soak-${renames}"
    if [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data "${name}" "http://127.0.0.1:${port}/products/${id}")" != 200 ]; then
      echo "rename ${id} failed" >&2
      stale=$((stale + 1))
    fi
    got=$(curl -s "http://127.0.0.1:${port}/products/${id}" | sed -n 's/.*"name":"\([^"]*\)".*/\1/p')
    [ "${got}" = "${name}" ] || stale=$((stale + 1))
    renames=$((renames + 1))
    sleep 0.1
  done
  echo "${renames} ${stale}"
}

soak() {
  local label=$1; shift
  local port pid start peak rss end deadline
  port=$(free_port)
  build/release/examples/catalog_server/catalog_server --port "${port}" --threads 2 "$@" >"${work}/${label}.out" 2>&1 &
  pid=$!
  pids+=("${pid}")
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:${port}/metrics" && break; sleep 0.1; done
  start=$(rss_kib "${pid}")
  peak=${start}
  deadline=$(( $(date +%s) + seconds ))
  wrk -t 1 -c 32 -d "${seconds}s" -s benchmarks/soak/mix.lua "http://127.0.0.1:${port}" >"${work}/${label}.wrk" 2>&1 &
  local wrk_pid=$!
  rename_loop "${port}" "${deadline}" >"${work}/${label}.renames" &
  local renames_pid=$!
  while kill -0 "${wrk_pid}" 2>/dev/null; do
    rss=$(rss_kib "${pid}")
    [ "${rss}" -gt "${peak}" ] && peak=${rss}
    sleep 1
  done
  wait "${wrk_pid}" || true
  wait "${renames_pid}"
  end=$(rss_kib "${pid}")
  kill "${pid}"
  read -r renames stale <"${work}/${label}.renames"
  local requests errors
  requests=$(awk '/requests in/ {print $1}' "${work}/${label}.wrk")
  errors=$(awk '/Non-2xx|Socket errors/ {n += 1} END {print n + 0}' "${work}/${label}.wrk")
  printf '%-7s %9s requests, %s with errors; %4s renames, %s stale after one returned; RSS start %s MiB, peak %s MiB, end %s MiB\n' \
    "${label}" "${requests}" "${errors}" "${renames}" "${stale}" \
    "$((start / 1024))" "$((peak / 1024))" "$((end / 1024))"
  if [ "${errors}" != 0 ] || [ "${stale}" != 0 ] || [ "${renames}" -lt 10 ]; then
    cat "${work}/${label}.wrk" >&2
    return 1
  fi
}

status=0
soak memory || status=1
soak redis --backend "redis://127.0.0.1:${redis_port}/0?prefix=soak:" || status=1
exit ${status}
