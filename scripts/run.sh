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

# A second request, this time as the crsctl commands a new user types: an admin logs in and
# creates an agency, issues tokens, the agency submits, a reviewer claims and decides. Each
# person gets a context in data/crsctl.yaml, which stays for trying more commands.
export CRSCTL_CONFIG="$PWD/data/crsctl.yaml"
ctl() { printf '\n$ crsctl %s\n' "$*" >&2; "$bin/crsctl" "$@"; }
echo
echo "== the same flow with crsctl (contexts in data/crsctl.yaml)"
# The first admin's token comes from the deployment's issuer key; every later one from IssueToken.
(umask 077; "$bin/crsctl" dev token --key-dir data/keys --subject reviewer:admin --role admin --ttl-secs 86400 >data/keys/admin.token)
ctl login admin --token-file data/keys/admin.token
out="$(ctl --context admin agency create --name "Ministry of Information (walkthrough)" --jurisdiction KZ)"; echo "$out"
agency="$(sed -n 's/^id: *//p' <<<"$out")"
(umask 077; ctl --context admin token issue --subject "agency:$agency" >data/keys/agency.token)
ctl login kz --token-file data/keys/agency.token
(umask 077; ctl --context admin token issue --subject reviewer:ana --role reviewer >data/keys/ana.token)
ctl login ana --token-file data/keys/ana.token
out="$(ctl --context kz request submit --jurisdiction KZ --instrument government-notice --category scams-and-fraud \
  --action restrict-in-jurisdiction --reference WALK-1 --url https://social.example/posts/2001)"; echo "$out"
request="$(sed -n 's/^request: *//p' <<<"$out")"
ctl --context kz request watch --request "$request" --until triaged --until in-review
ctl --context ana review queues
out="$(ctl --context ana review next)"; echo "$out"
case_id="$(sed -n 's/^case: *//p' <<<"$out")"
ctl --context ana review decide "$case_id" --item 0=restrict \
  --legal-ground "0=Law on Online Platforms, Art. 9(4)(2)" --explanation "0=A fraudulent investment scheme." \
  --summary "Restricted in Kazakhstan."
ctl --context kz request watch --request "$request" --until decided
ctl --context kz request show "$request"
ctl --context admin status
echo
echo "== try it yourself: export CRSCTL_CONFIG=$CRSCTL_CONFIG; crsctl context list; crsctl --context ana review queues"

if [ -t 0 ]; then
  echo
  echo "The suite is running: intake :50051, triage :50052, legal-review :50053, notification :50054."
  echo "Press Ctrl-C to stop."
  wait
fi
