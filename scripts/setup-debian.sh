#!/usr/bin/env bash
# Installs, only when missing, the Debian 12 packages this project needs.
# Usage: scripts/setup-debian.sh [more packages]   (as root, or prints the sudo command)
set -euo pipefail

packages=(
  build-essential cmake pkg-config ccache curl
  libboost1.81-dev libboost-url1.81-dev libboost-json1.81-dev libfmt-dev libssl-dev libhiredis-dev
  catch2 libbenchmark-dev
  redis-server varnish varnish-modules wrk
  clang libclang-rt-14-dev
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} Debian packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}" >&2
  echo "setup: run as root, or:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d-less machines would start the distribution's redis/varnish
# services; the tests start their own on free ports, so that is harmless.
apt-get install -y -qq --no-install-recommends "${missing[@]}"
