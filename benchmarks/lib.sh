# What the benchmark scripts share; sourced, from the repository's root.
# A working directory and the processes started, cleaned up on exit; free
# loopback ports; a redis-server of its own.

work=$(mktemp -d)
chmod 755 "${work}" # as root, varnishd's jailed user must enter it
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "${pid}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "${work}"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts redis-server on a free port (in `redis_port`), through the command
# prefix given, if any (taskset ...), and waits until it answers.
start_redis() {
  redis_port=$(free_port)
  "$@" redis-server --port "${redis_port}" --bind 127.0.0.1 --save '' --appendonly no --dir "${work}" \
    --logfile "${work}/redis.log" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do redis-cli -p "${redis_port}" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis-server did not start" >&2
  exit 1
}
