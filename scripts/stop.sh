#!/usr/bin/env bash
# Stops the ebbd that `make run` started, gracefully, by PID, and then the
# replicas it left running. (ebbd leaves replicas running on purpose so a
# restarted ebbd adopts them without dropping a request; `make stop` means
# "stop everything".)
set -euo pipefail
bin=${2:-$(dirname "$0")/../bin}
run_dir=$(cd "$1" 2>/dev/null && pwd) || { echo "ebbd is not running"; exit 0; }
pidfile=$run_dir/ebbd.pid
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "ebbd did not stop in 15s; killing it"; kill -KILL "$pid"; fi
  fi
  rm -f "$pidfile"
  echo "ebbd stopped"
else
  echo "ebbd is not running"
fi

# The private containerd's shims name the run dir on their command line; the
# replicas are their children.
shims=$(pgrep -f "containerd-shim.*$run_dir" || true)
if [ -n "$shims" ]; then
  for shim in $shims; do pkill -TERM -P "$shim" 2>/dev/null || true; done
  sleep 1
  # runc deletes what is left of each replica, its cgroups and its state
  # included; killing the processes alone would leave those on the host.
  for state in $(grep -l "\"bundle=$run_dir/" /run/containerd/runc/*/*/state.json 2>/dev/null || true); do
    dir=$(dirname "$state")
    runc --root "$(dirname "$dir")" delete --force "$(basename "$dir")" 2>/dev/null || true
  done
  for shim in $shims; do pkill -KILL -P "$shim" 2>/dev/null || true; kill -KILL "$shim" 2>/dev/null || true; done
  echo "replicas stopped"
fi
awk -v d="$run_dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
# With isolation on, the replicas' namespaces, their links, the node bridge
# and its nftables table outlive ebbd (a restarted ebbd adopts them); with
# the replicas gone, nothing needs them.
if [ -x "$bin/ebbd" ]; then "$bin/ebbd" teardown-network; fi
