#!/bin/sh
# Installs what building and testing dlqat needs on Debian 12 (run as root).
# Idempotent: does nothing when everything is already installed.
set -eu
PKGS="build-essential pkg-config libopenblas-openmp-dev libjansson-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $missing
fi
