#!/usr/bin/env bash
# A/B two fulcrum binaries in interleaved rounds: each round starts each binary in front of
# the same four bench backends and measures it with `fulcrum bench --target --target-pid`
# (rate, latency and the balancer's CPU per operation from /proc/PID/stat).
#   bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [SCENARIO] [extra serve arguments...]
#   e.g. bench/ab.sh /tmp/fulcrum-main /tmp/fulcrum-try 5 connrate --loops 2
# Prints one result line per binary and round, prefixed with the binary's name.
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,6p "$0"; exit 2; }
old=$1 new=$2 rounds=${3:-5} scenario=${4:-connrate}
shift $(( $# < 4 ? $# : 4 ))
ports=(21001 21002 21003 21004) # below the ephemeral range: no TIME_WAIT of an outgoing connection holds them
serve_args=() bench_args=()
for p in "${ports[@]}"; do
  serve_args+=(--backend "127.0.0.1:$p")
  bench_args+=(--backend-ports "$p")
done
for round in $(seq "$rounds"); do
  for bin in "$old" "$new"; do
    "$bin" serve --listen 127.0.0.1:21000 --admin 127.0.0.1:21010 --log-level error \
      --health-interval 0 "${serve_args[@]}" "$@" &
    pid=$!
    trap 'kill "$pid" 2>/dev/null' EXIT # a failed run must not leave it holding the ports
    # Until its admin port listens, at most 5 s. Not the proxy port: a connection there would
    # be proxied to a backend not yet started and mark it down.
    for _ in $(seq 100); do
      (exec 3<>/dev/tcp/127.0.0.1/21010) 2>/dev/null && break
      sleep 0.05
    done
    "$old" bench --target 127.0.0.1:21000 --target-pid "$pid" "${bench_args[@]}" \
      --scenario "$scenario" --duration 3s 2>&1 | grep "^$scenario " | sed "s|^|$(basename "$bin") round=$round |" ||
      echo "$(basename "$bin") round=$round: no $scenario result" >&2
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
done
