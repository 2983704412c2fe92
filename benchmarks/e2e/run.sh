#!/usr/bin/env bash
# The end-to-end benchmark, one command: builds release, starts on loopback
# a redis-server, page_server (the origin; its memory hits; its Redis hits,
# awaitable and synchronous), the demo, and nginx proxy_cache and Varnish in
# front of the same origin; proves that each target hits (first request a
# miss, second a hit, the origin's handler count unchanged across every
# run); then runs wrk against each, interleaved in a rotating order, and
# prints one table of medians (requests/s, p50, p99, ratio to the floor, a
# Beast handler's constant response) and the targets, and writes a chart.
#
# Every server runs on CPU 0 and wrk (and redis-server) on the last CPU, so
# that the servers compared get the same core and the load generator never
# takes it from them.
#
# Usage: benchmarks/e2e/run.sh [seconds per wrk run, default 4] [rounds, default 3]
#        CHART=path.png (default docs/benchmarks/e2e.png)
# About 6 minutes on two cores after the release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${1:-4}"
rounds="${2:-3}"
chart="${CHART:-docs/benchmarks/e2e.png}"

bash scripts/setup-debian.sh nginx-light gnuplot-nox >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release --target catalog_server page_server >/dev/null

source benchmarks/lib.sh

cpus=$(nproc)
on_server_cpu() { taskset -c 0 "$@"; }
on_client_cpu() { taskset -c "$((cpus - 1))" "$@"; }

# Waits (at most 10 s) until `url` answers.
await_url() {
  for _ in $(seq 100); do curl -s -o /dev/null "$1" && return; sleep 0.1; done
  echo "$2 did not start" >&2
  exit 1
}

declare -A port
start_redis on_client_cpu

start_page_server() {
  local name=$1; shift
  port[${name}]=$(free_port)
  on_server_cpu build/release/benchmarks/page_server --port "${port[${name}]}" "$@" >"${work}/${name}.out" 2>&1 &
  pids+=($!)
  await_url "http://127.0.0.1:${port[${name}]}/calls" "page_server (${name})"
}
start_page_server memory
start_page_server redis-async --backend "redis://127.0.0.1:${redis_port}/0?prefix=e2e-async:"
start_page_server redis-sync --backend "redis://127.0.0.1:${redis_port}/0?prefix=e2e-sync:" --sync

port[demo]=$(free_port)
on_server_cpu build/release/examples/catalog_server/catalog_server --port "${port[demo]}" --threads 1 >"${work}/demo.out" 2>&1 &
pids+=($!)
await_url "http://127.0.0.1:${port[demo]}/metrics" "catalog_server"

port[nginx]=$(free_port)
sed -e "s|@WORK@|${work}|g" -e "s|@PORT@|${port[nginx]}|g" -e "s|@ORIGIN_PORT@|${port[memory]}|g" \
  benchmarks/e2e/nginx.conf >"${work}/nginx.conf"
on_server_cpu nginx -p "${work}" -c "${work}/nginx.conf" >"${work}/nginx.out" 2>&1 &
pids+=($!)
await_url "http://127.0.0.1:${port[nginx]}/origin/1" "nginx"

port[varnish]=$(free_port)
sed -e "s|@ORIGIN_PORT@|${port[memory]}|g" benchmarks/e2e/varnish.vcl >"${work}/varnish.vcl"
on_server_cpu varnishd -F -n "${work}/varnish" -a "127.0.0.1:${port[varnish]}" -f "${work}/varnish.vcl" -s malloc,256m -T none \
  -p vsl_space=1M >"${work}/varnish.out" 2>&1 &
pids+=($!)
await_url "http://127.0.0.1:${port[varnish]}/origin/1" "varnishd"

# Each target: the server it runs on, its path (SIZE: the body's bytes),
# the header and value a hit carries, and whose handler count must not move.
declare -A server path hit_header hit_value counted
add_target() { server[$1]=$2; path[$1]=$3; hit_header[$1]=$4; hit_value[$1]=$5; counted[$1]=$6; }
add_target floor memory /constant/SIZE "" "" ""
add_target memory-hit memory /cached/SIZE Cache-Status "hit;" memory
add_target redis-async-hit redis-async /cached/SIZE Cache-Status "hit;" redis-async
add_target redis-sync-hit redis-sync /cached/SIZE Cache-Status "hit;" redis-sync
add_target nginx-hit nginx /origin/SIZE X-Cache-Status HIT memory
add_target varnish-hit varnish /origin/SIZE X-Cache HIT memory
add_target demo-uncached demo /greeting "" "" ""
add_target demo-cached demo /products/21 Cache-Status "hit;" ""

url_of() { echo "http://127.0.0.1:${port[${server[$1]}]}${path[$1]/SIZE/$2}"; }
calls_of() { [ -n "$1" ] && curl -s "http://127.0.0.1:${port[$1]}/calls" || echo 0; }

# Runs: target size connections (the demo's routes have their own sizes).
runs=()
for size in 1024 65536; do
  for t in floor memory-hit redis-async-hit redis-sync-hit nginx-hit varnish-hit; do runs+=("${t} ${size} 32"); done
done
for t in floor memory-hit redis-async-hit redis-sync-hit nginx-hit varnish-hit; do runs+=("${t} 1024 256"); done
runs+=("demo-uncached - 32" "demo-cached - 32")

# Every cached target: a miss, then a hit, and the handler ran once.
for run in "${runs[@]}"; do
  read -r t size _ <<<"${run}"
  [ -z "${hit_header[${t}]}" ] && continue
  url=$(url_of "${t}" "${size}")
  before=$(calls_of "${counted[${t}]}")
  curl -s -o /dev/null "${url}"
  value=$(curl -s -D - -o /dev/null "${url}" | tr -d '\r' | sed -n "s/^${hit_header[${t}]}: //Ip")
  after=$(calls_of "${counted[${t}]}")
  if [[ "${value}" != *"${hit_value[${t}]}"* ]] || [ $((after - before)) -gt 1 ]; then
    echo "${t} (${size}): the second GET was not a hit (${hit_header[${t}]}: ${value}; handler calls ${before} -> ${after})" >&2
    exit 1
  fi
done

# requests/s, p50 and p99 (ms) of one wrk run.
measure() {
  local out
  out=$(on_client_cpu wrk -t1 -c"$2" -d"${duration}s" --latency "$1")
  if grep -q 'Non-2xx\|Socket errors' <<<"${out}"; then echo "wrk reported errors for $1:" >&2; echo "${out}" >&2; exit 1; fi
  awk 'function ms(v) { if (v ~ /us$/) { sub(/us/, "", v); return v / 1000 } if (v ~ /ms$/) { sub(/ms/, "", v); return v }
                        sub(/s/, "", v); return v * 1000 }
       /^Requests\/sec:/ { rps = $2 } $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
       END { printf "%s %.3f %.3f\n", rps, p50, p99 }' <<<"${out}"
}

results="${work}/results"
n=${#runs[@]}
echo "machine: ${cpus} cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); servers on CPU 0, wrk -t1 and redis-server on CPU $((cpus - 1)); ${duration}s a run, ${rounds} rounds"
for ((round = 0; round < rounds; round++)); do
  echo "round $((round + 1)) of ${rounds}..."
  for ((i = 0; i < n; i++)); do
    read -r t size c <<<"${runs[$(((i + round * 7) % n))]}"
    before=$(calls_of "${counted[${t}]}")
    echo "${t} ${size} ${c} $(measure "$(url_of "${t}" "${size}")" "${c}")" >>"${results}"
    after=$(calls_of "${counted[${t}]}")
    if [ -n "${counted[${t}]}" ] && [ "${after}" != "${before}" ]; then
      echo "${t} (${size}, ${c} connections): the handler ran $((after - before)) times during a hit run" >&2
      exit 1
    fi
  done
done

# Medians per target, size and connections; ratios to the floor of the same size and connections.
table="${work}/table"
sort -k1,1 -k2,2 -k3,3n -k4,4g "${results}" | awk '
  { key = $1 " " $2 " " $3; n[key]++; rps[key, n[key]] = $4; p50[key, n[key]] = $5; p99[key, n[key]] = $6 }
  function median(a, key, count,   i, j, v, t) { for (i = 1; i <= count; i++) v[i] = a[key, i]
    for (i = 1; i <= count; i++) for (j = i + 1; j <= count; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
    return v[int((count + 1) / 2)] }
  END { for (key in n) print key, median(rps, key, n[key]), median(p50, key, n[key]), median(p99, key, n[key]) }' >"${table}"

echo
printf '%-16s %6s %6s %12s %9s %9s %9s\n' target body conns "req/s" "p50 ms" "p99 ms" "vs floor"
for run in "${runs[@]}"; do
  read -r t size c <<<"${run}"
  read -r _ _ _ rps p50 p99 <<<"$(grep "^${t} ${size} ${c} " "${table}")"
  floor=$(awk -v s="${size}" -v c="${c}" '$1 == "floor" && $2 == s && $3 == c { print $4 }' "${table}")
  ratio=$([ -n "${floor}" ] && awk -v a="${rps}" -v f="${floor}" 'BEGIN { printf "%.2fx", a / f }' || echo "-")
  printf '%-16s %6s %6s %12.0f %9.3f %9.3f %9s\n' "${t}" "${size}" "${c}" "${rps}" "${p50}" "${p99}" "${ratio}"
done

rps_of() { awk -v t="$1" -v s="$2" -v c="$3" '$1 == t && $2 == s && $3 == c { print $4 }' "${table}"; }
check() { # description, value, comparison, bound
  local verdict
  verdict=$(awk -v v="$2" -v b="$4" -v op="$3" 'BEGIN { ok = (op == ">=") ? v >= b : v < b; print (ok ? "met" : "NOT MET") }')
  printf '  %-58s %8.2f (target %s %s): %s\n' "$1" "$2" "$3" "$4" "${verdict}"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print a / b }'; }
echo
echo "targets (1 KiB body, 32 connections):"
check "memory hit / constant response" "$(ratio "$(rps_of memory-hit 1024 32)" "$(rps_of floor 1024 32)")" ">=" 0.95
check "memory hit / nginx proxy_cache hit" "$(ratio "$(rps_of memory-hit 1024 32)" "$(rps_of nginx-hit 1024 32)")" ">=" 1.5
check "memory hit / Varnish hit" "$(ratio "$(rps_of memory-hit 1024 32)" "$(rps_of varnish-hit 1024 32)")" ">=" 1.5
check "demo's cached route (/products/21), p50 ms" "$(awk '$1 == "demo-cached" { print $5 }' "${table}")" "<" 2

# The chart: requests/s per target, one cluster per body size and connections.
mkdir -p "$(dirname "${chart}")"
chart_data="${work}/chart"
for key in "1024 32" "65536 32" "1024 256"; do
  printf '"%s B, %s conns"' ${key} >>"${chart_data}"
  for t in floor memory-hit redis-async-hit redis-sync-hit nginx-hit varnish-hit; do
    printf ' %s' "$(rps_of "${t}" ${key})" >>"${chart_data}"
  done
  echo >>"${chart_data}"
done
gnuplot <<GNUPLOT
set terminal pngcairo size 960,520 font ",10" noenhanced
set output "${chart}"
set title "Requests/s on loopback: each server on one core, wrk -t1 on another (median of ${rounds} runs)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key outside bottom center horizontal maxrows 2
set ylabel "requests/s"
set yrange [0:*]
set grid ytics
plot "${chart_data}" using 2:xtic(1) title "constant response (floor)", \
     "" using 3 title "cache_page, memory hit", "" using 4 title "cache_page, Redis hit (awaitable)", \
     "" using 5 title "cache_page, Redis hit (sync)", "" using 6 title "nginx proxy_cache hit", "" using 7 title "Varnish hit"
GNUPLOT
echo
echo "chart: ${chart}"
