#!/usr/bin/env bash
# Starts ebbd in the background with the embedded store, points the CLI at
# it, packages examples/hello as an OCI image, pushes it and deploys it.
# Called by `make run`; `make stop` undoes it.
set -euo pipefail
bin=$1 run_dir=$2 api_addr=$3 http_addr=$4 cli_config=$5

mkdir -p "$run_dir"
pidfile=$run_dir/ebbd.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "ebbd is already running (pid $(cat "$pidfile")); restarting it"
  "$(dirname "$0")/stop.sh" "$run_dir"
fi

# The key-encryption key of secret objects: 32 random bytes only root reads.
key_file=$run_dir/secrets.key
if [ ! -f "$key_file" ]; then
  (umask 077 && head -c 32 /dev/urandom >"$key_file")
fi
chmod 600 "$key_file"

echo "starting ebbd (data in $run_dir, log in $run_dir/ebbd.log)"
setsid "$bin/ebbd" --data-dir "$run_dir" --api-addr "$api_addr" --http-addr "$http_addr" --secrets-key-file "$key_file" \
  >"$run_dir/ebbd.log" 2>&1 < /dev/null &
echo $! >"$pidfile"

for _ in $(seq 1 300); do
  if curl -fsS "http://$api_addr/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "ebbd exited during start; last log lines:" >&2
    tail -n 20 "$run_dir/ebbd.log" >&2
    exit 1
  fi
  sleep 0.1
done
curl -fsS "http://$api_addr/readyz" >/dev/null || { echo "ebbd did not become ready; see $run_dir/ebbd.log" >&2; exit 1; }

mkdir -p "$(dirname "$cli_config")"
umask 077
printf 'api: http://%s\ntoken: %s\n' "$api_addr" "$(cat "$run_dir/token")" >"$cli_config"
echo "wrote CLI config $cli_config"

"$bin/ebb" images build "$bin/hello" --name hello:latest -o "$run_dir/hello.oci.tar"
"$bin/ebb" images push "$run_dir/hello.oci.tar"
"$bin/ebb" deploy hello --image hello:latest

port=${http_addr##*:}
echo
echo "hello is deployed. Try it:"
echo "  curl http://hello.localhost:$port/"
echo "Then: $bin/ebb get hello    (make stop ends ebbd)"
