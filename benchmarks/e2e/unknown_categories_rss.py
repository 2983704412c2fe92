#!/usr/bin/env python3
"""Requests for distinct unknown categories (404s, never stored) against the
demo: the server's RSS before and after, which must barely move, since a
fill whose response is not stored leaves nothing behind.

usage: unknown_categories_rss.py CATALOG_SERVER [REQUESTS] [VALUE_BYTES] [--backend URL]
Loopback only; one keep-alive connection; bounded by REQUESTS and 120 s.
"""
import http.client
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    extra = sys.argv[sys.argv.index("--backend"):][:2] if "--backend" in sys.argv else []
    if extra:
        args = [a for a in args if a != extra[1]]
    if not args:
        sys.exit(__doc__)
    server, requests, value_bytes = args[0], int(args[1]) if len(args) > 1 else 20000, int(args[2]) if len(args) > 2 else 4096
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--threads", "1", *extra], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/")
                conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        before = rss_kib(proc.pid)
        padding = "x" * value_bytes
        statuses = {}
        stop = time.monotonic() + 120
        for i in range(requests):
            if time.monotonic() > stop:
                break
            conn.request("GET", f"/products?category={padding}{i}")
            res = conn.getresponse()
            res.read()
            statuses[res.status] = statuses.get(res.status, 0) + 1
        after = rss_kib(proc.pid)
        done = sum(statuses.values())
        print(f"unknown categories: {done} requests of {value_bytes}-byte values, statuses {statuses}; "
              f"RSS {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after, grew {(after - before) / 1024:.1f} MiB")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
