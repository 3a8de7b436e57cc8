#!/usr/bin/env bash
# Builds fulcrum and compares it with direct, HAProxy and nginx on this machine (and fulcrum
# on its goroutine data plane, when serve has --data-plane):
#   bench/compare.sh [flags of `fulcrum bench compare`]   e.g. --rounds 5 --duration 3s
#   bench/compare.sh --peer fulcrum --peer haproxy --fulcrum-arg=--data-plane=epoll
#   bench/compare.sh --yardstick ../shared/reference/evloop-yardstick --peer fulcrum --peer yardstick --peer haproxy
# Peers that are not installed are skipped (apt-get install -y haproxy nginx libnginx-mod-stream).
# Writes bench/RESULTS.md, its data bench/RESULTS.json and, with fulcrum-chart, the chart
# bench/RESULTS.png unless --out says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/fulcrum" ./cmd/fulcrum
go build -o "$tmp/fulcrum-chart" ./cmd/fulcrum-chart
status=0
"$tmp/fulcrum" bench compare "$@" | tee "$tmp/compare.out" || status=$?
# compare's last line says how to draw the chart its report links.
chart="$(sed -n 's/^chart: fulcrum-chart //p' "$tmp/compare.out")"
if [ -n "$chart" ]; then
  # shellcheck disable=SC2086 # the flag and the two file names compare printed
  "$tmp/fulcrum-chart" $chart
fi
exit "$status"
