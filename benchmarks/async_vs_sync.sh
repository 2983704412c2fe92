#!/usr/bin/env bash
# The demo on one io thread, its list page cached in Redis, served by the
# awaitable path (default) and by the synchronous one (--sync), under wrk
# at 1, 32 and 256 connections, interleaved in one run. Prints requests/s
# and p99 for each, the async/sync ratio, and the round trips a Redis miss
# costs (redis_hit_bench's cache_page_miss).
#
# Usage: benchmarks/async_vs_sync.sh [seconds per wrk run, default 5]
# Starts its own redis-server and demo servers on free loopback ports and
# stops them; about 2 minutes on two cores after the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-5}"

bash scripts/setup-debian.sh >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release --target catalog_server redis_hit_bench >/dev/null

source benchmarks/lib.sh
start_redis

# Starts the demo (extra arguments passed on) and records its port.
declare -A port
start_demo() {
  local name=$1; shift
  build/release/examples/catalog_server/catalog_server --port 0 --threads 1 \
    --backend "redis://127.0.0.1:${redis_port}/0?prefix=bench-${name}:" "$@" >"${work}/${name}.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    if grep -q 'listening on' "${work}/${name}.out" 2>/dev/null; then
      port[${name}]=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "${work}/${name}.out" | head -1)
      return
    fi
    sleep 0.1
  done
  echo "catalog_server (${name}) did not start" >&2
  exit 1
}

target="/products?category=books&page=1"
start_demo async
start_demo sync --sync

for mode in async sync; do
  url="http://127.0.0.1:${port[${mode}]}${target}"
  curl -s -o /dev/null "${url}"
  status=$(curl -s -D - -o "${work}/body" "${url}" | tr -d '\r' | sed -n 's/^Cache-Status: //Ip')
  case "${status}" in
    *hit*) ;;
    *) echo "${mode}: the second GET was not a hit (Cache-Status: ${status})" >&2; exit 1 ;;
  esac
done
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "route: GET ${target}, $(wc -c <"${work}/body") byte body, a Redis hit; one io thread; wrk -t1, ${duration}s a run"

# requests/s and p99 (ms) of one wrk run.
measure() {
  local out
  out=$(wrk -t1 -c"$2" -d"${duration}s" --latency "http://127.0.0.1:${port[$1]}${target}")
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"${out}")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"${out}")
  echo "${rps} ${p99}"
}

printf '%-12s %14s %10s %14s %10s %8s\n' connections "async req/s" "p99 ms" "sync req/s" "p99 ms" async/sync
for c in 1 32 256; do
  read -r a_rps a_p99 <<<"$(measure async "${c}")"
  read -r s_rps s_p99 <<<"$(measure sync "${c}")"
  ratio=$(awk -v a="${a_rps}" -v s="${s_rps}" 'BEGIN { printf "%.2f", (s > 0 ? a / s : 0) }')
  printf '%-12s %14s %10s %14s %10s %8s\n' "${c}" "${a_rps}" "${a_p99}" "${s_rps}" "${s_p99}" "${ratio}x"
done

echo
echo "round trips per Redis miss (1 KiB page; coalesce=1 is the default):"
# The benchmark's reporter prints in colour, the counter in the last column.
build/release/benchmarks/redis_hit_bench --benchmark_filter=cache_page_miss 2>/dev/null |
  sed 's/\x1b\[[0-9;]*m//g' | awk '/^cache_page_miss/ { print "  " $1 ": " $NF }'
