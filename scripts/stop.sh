#!/usr/bin/env bash
# Stops the ebbd that `make run` started, gracefully, by PID.
set -euo pipefail
run_dir=$1
pidfile=$run_dir/ebbd.pid
[ -f "$pidfile" ] || { echo "ebbd is not running"; exit 0; }
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then echo "ebbd did not stop in 15s; killing it"; kill -KILL "$pid"; fi
fi
rm -f "$pidfile"
echo "ebbd stopped"
