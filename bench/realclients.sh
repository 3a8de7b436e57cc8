#!/usr/bin/env bash
# Builds fulcrum and runs real clients through it and through HAProxy, each in front of the
# same two real servers, in interleaved rounds:
#   wrk             HTTP/1.1 keep-alive, 32 connections, two nginx HTTP servers
#   redis-benchmark 32 connections, pipelined SET and GET, two redis-servers
#   pgbench         select-only, 16 clients, two throw-away PostgreSQL clusters
#   bench/realclients.sh [flags of `fulcrum bench real`]   e.g. --rounds 5 --duration 5s
# Installs nothing: a suite whose tools are missing is skipped and says what to install
# (apt-get install -y wrk nginx redis-server redis-tools postgresql haproxy).
# Writes bench/RESULTS-real.md unless --out says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/fulcrum" ./cmd/fulcrum
"$tmp/fulcrum" bench real "$@"
