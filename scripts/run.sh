#!/usr/bin/env bash
# `make run`: builds CRS, starts the four services on the embedded default (SQLite under
# ./data, Redis from REDIS_URL or a private redis-server), and walks a demo request through them.
# With a terminal attached the services keep running after the demo until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

command -v cargo >/dev/null || { echo "cargo is missing: install Rust from https://rustup.rs" >&2; exit 1; }
cargo build --bins
bin="$target/debug"

mkdir -p data/logs
"$bin/crsctl" keygen --key-dir data/keys
# The key that seals webhook secrets; intake and notification share it.
[ -f data/keys/webhook-secret.key ] || (umask 077; head -c 48 /dev/urandom | base64 -w0 >data/keys/webhook-secret.key)
redis_url="$(scripts/ensure-redis.sh)"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -z "${REDIS_URL:-}" ] && [ -f data/redis.pid ]; then
    kill "$(cat data/redis.pid)" 2>/dev/null || true
    rm -f data/redis.pid
  fi
}
trap cleanup EXIT INT TERM

export CRS_REDIS__URL="$redis_url"
for svc in intake triage legal-review notification; do
  extra=()
  # Development mode: the demo's webhook receiver listens on 127.0.0.1 over plain http, which
  # production refuses (https only, public addresses only).
  if [ "$svc" = notification ]; then extra=(CRS_DELIVERY__DEVELOPMENT_MODE=true); fi
  env "${extra[@]}" "$bin/crs-$svc" 2>"data/logs/$svc.log" &
  pids+=("$!")
  echo "started crs-$svc (pid $!, log data/logs/$svc.log)"
done
echo "redis: $redis_url"

"$bin/crsctl" demo --key-dir data/keys

if [ -t 0 ]; then
  echo
  echo "The suite is running: intake :50051, triage :50052, legal-review :50053, notification :50054."
  echo "Press Ctrl-C to stop."
  wait
fi
