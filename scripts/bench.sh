#!/usr/bin/env bash
# `make bench`: CRS's intake beside the ceilings of this machine, measured alternately in one run,
# then bench/RESULTS.md.
#
#   each round: a bare tonic echo server (the gRPC ceiling), pgbench inserting one row per
#   transaction with synchronous commit (the durable-write ceiling), crs-bench against intake
#   alone, and against the four release binaries, on PostgreSQL, all at the same concurrency;
#   then: an open loop at a fixed rate with a sample followed to legal review and the agency's
#   webhook (the hops) and the outbox backlog sampled; the same closed loop on SQLite; the rate
#   limiter (beside redis-benchmark) and SLA timer benchmarks.
#
# BENCH_SECS (10), BENCH_ROUNDS (3), BENCH_CLIENTS (64), BENCH_OPEN_RATE (1000),
# BENCH_OPEN_SECS (60), BENCH_LIGHT_RATE (100) and BENCH_LIGHT_SECS (30) (an open loop at a rate
# the machine keeps up with, for the hops themselves), BENCH_PG (postgres://postgres@127.0.0.1:5432)
# change the shape;
# BENCH_PROFILE=debug and BENCH_MICRO=0 make a quick check of the script itself (figures from a
# debug build mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
secs="${BENCH_SECS:-10}"
rounds="${BENCH_ROUNDS:-3}"
clients="${BENCH_CLIENTS:-64}"
open_rate="${BENCH_OPEN_RATE:-1000}"
open_secs="${BENCH_OPEN_SECS:-60}"
light_rate="${BENCH_LIGHT_RATE:-100}"
light_secs="${BENCH_LIGHT_SECS:-30}"
pg="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac

for tool in pgbench psql; do
  command -v "$tool" >/dev/null || { echo "make bench needs $tool (Debian: apt-get install postgresql-client)" >&2; exit 1; }
done
profile="${BENCH_PROFILE:-release}"
scripts/ensure-test-services.sh
if [ "$profile" = release ]; then cargo build --release --workspace --bins; else cargo build --workspace --bins; fi
bin="$target/$profile"

work="$(mktemp -d /tmp/crs-bench.XXXXXX)"
results="$work/results"
mkdir -p "$results" "$work/data/keys" "$work/logs"
echo "figures and logs: $work"
pids=()
echo_pid=""
cleanup() {
  for pid in "${pids[@]}" $echo_pid; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "postgresql: $(psql "$pg/postgres" -Atc 'show server_version') (synchronous_commit $(psql "$pg/postgres" -Atc 'show synchronous_commit'))"
  echo "redis: $(redis-cli -v 2>/dev/null || echo unknown)"
  echo "rustc: $(rustc --version)"
  echo "git: $(git describe --always --dirty 2>/dev/null || echo unknown)"
} >"$results/machine.txt"

"$bin/crsctl" keygen --key-dir "$work/data/keys" >/dev/null
(umask 077; head -c 48 /dev/urandom | base64 -w0 >"$work/data/keys/webhook-secret.key")

# Below Linux's ephemeral ports (32768-60999): a relay that keeps calling a service while it
# restarts may otherwise be given the service's own port for its end, connect to itself, and hold
# the port the service is about to listen on.
port() { case "$1" in intake) echo 21051 ;; triage) echo 21052 ;; legal-review) echo 21053 ;; notification) echo 21054 ;; esac; }
admin_port() { case "$1" in intake) echo 9301 ;; triage) echo 9302 ;; legal-review) echo 9303 ;; notification) echo 9304 ;; esac; }
db_name() { echo "crs_bench_${1//-/_}"; }
services=(intake triage legal-review notification)

# Starts release binaries on `postgres` or `sqlite`, each on a fresh database: the four services,
# or those named after the backend.
start_services() {
  local backend="$1" svc url started
  shift
  started=("${@:-${services[@]}}")
  for svc in "${started[@]}"; do
    if [ "$backend" = postgres ]; then
      psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $(db_name "$svc")" -c "CREATE DATABASE $(db_name "$svc")"
      url="$pg/$(db_name "$svc")"
    else
      rm -f "$work/data/$svc.db"*
      url="sqlite://$work/data/$svc.db?mode=rwc"
    fi
    (
      cd "$work"
      export CRS_DATABASE__URL="$url"
      export CRS_SERVER__LISTEN_ADDR="127.0.0.1:$(port "$svc")"
      export CRS_ADMIN__LISTEN_ADDR="127.0.0.1:$(admin_port "$svc")"
      case "$svc" in
        intake)
          # Alone, intake's relay has no triage to hand off to: each hand-off is tried once (a
          # claim and a call, as its delivery would be) and then held past the run, not retried
          # every few hundred milliseconds.
          if [ "${started[*]}" = intake ]; then
            export CRS_OUTBOX__INITIAL_BACKOFF_MS=3600000 CRS_OUTBOX__MAX_BACKOFF_MS=3600000
          fi
          export CRS_CONFIG="$root/bench/intake.toml"
          export CRS_RATE_LIMITS__KEY_PREFIX="crs:bench:$$:$backend:rl"
          export CRS_PEERS__TRIAGE="http://127.0.0.1:$(port triage)"
          export CRS_PEERS__LEGAL_REVIEW="http://127.0.0.1:$(port legal-review)"
          export CRS_PEERS__NOTIFICATION="http://127.0.0.1:$(port notification)" ;;
        triage)
          export CRS_PEERS__LEGAL_REVIEW="http://127.0.0.1:$(port legal-review)" ;;
        legal-review)
          export CRS_TIMERS__KEY_PREFIX="crs:bench:$$:$backend:timers"
          export CRS_PEERS__INTAKE="http://127.0.0.1:$(port intake)"
          export CRS_PEERS__TRIAGE="http://127.0.0.1:$(port triage)"
          export CRS_PEERS__NOTIFICATION="http://127.0.0.1:$(port notification)" ;;
        notification)
          # The bench's webhook receiver listens on 127.0.0.1 over plain http.
          export CRS_DELIVERY__DEVELOPMENT_MODE=true ;;
      esac
      exec "$bin/crs-$svc" 2>>"$work/logs/$svc-$backend.log"
    ) &
    pids+=("$!")
  done
  for svc in "${started[@]}"; do
    for _ in $(seq 150); do
      (exec 3<>"/dev/tcp/127.0.0.1/$(port "$svc")") 2>/dev/null && break
      sleep 0.2
    done
  done
  sleep 1
}

stop_services() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}

# Intake's /metrics, at the end of a run: where its submissions' time went.
intake_metrics() {
  (exec 3<>"/dev/tcp/127.0.0.1/$(admin_port intake)" && printf 'GET /metrics HTTP/1.0\r\nHost: intake\r\n\r\n' >&3 && cat <&3) >"$1" 2>/dev/null || true
}

crs_load() {
  "$bin/crs-bench" load --intake "http://127.0.0.1:$(port intake)" --legal-review "http://127.0.0.1:$(port legal-review)" \
    --key-dir "$work/data/keys" --receiver 127.0.0.1:20098 "$@"
}

pg_databases() {
  local svc out=()
  for svc in "${services[@]}"; do out+=("$pg/$(db_name "$svc")"); done
  (IFS=,; echo "${out[*]}")
}

# The durable-write ceiling: one row per transaction, synchronous commit, same concurrency.
psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS crs_bench_pgbench" -c "CREATE DATABASE crs_bench_pgbench"
psql "$pg/crs_bench_pgbench" -qc "CREATE TABLE rows (id bigserial PRIMARY KEY, body text NOT NULL)"
echo "INSERT INTO rows (body) VALUES ('one submission''s worth of row');" >"$work/insert.sql"
pgbench_round() {
  local out tps
  out="$(pgbench -n -M prepared -c "$clients" -j 2 -T "$secs" -f "$work/insert.sql" "$pg/crs_bench_pgbench" 2>&1)" || echo "$out" >&2
  tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")"
  printf '{"mode":"pgbench","clients":%s,"secs":%s,"per_sec":%s}\n' "$clients" "$secs" "${tps:-null}" >"$1"
  echo "pgbench: $clients clients, one-row insert per transaction: ${tps:-?} TPS"
}

"$bin/crs-bench" echo-server --listen 127.0.0.1:20099 >/dev/null &
echo_pid=$!
# The first round's client must not race the server's start.
for _ in $(seq 150); do
  (exec 3<>/dev/tcp/127.0.0.1/20099) 2>/dev/null && break
  sleep 0.2
done

cat >"$results/commands.txt" <<EOF
$bin/crs-bench echo --target http://127.0.0.1:20099 --clients $clients --secs $secs
pgbench -n -M prepared -c $clients -j 2 -T $secs -f insert.sql   # INSERT INTO rows (body) VALUES (...)
crs-bench load --clients $clients --secs $secs --agencies 16 --databases <intake's PostgreSQL database>   # intake alone
crs-bench load --clients $clients --secs $secs --agencies 16 --databases <the four services' PostgreSQL databases>
crs-bench load --rate $light_rate --secs $light_secs --warmup-secs 5 --follow 20 --decide
crs-bench load --rate $open_rate --secs $open_secs --warmup-secs 0 --follow 200 --decide
crs-bench load --clients $clients --secs $secs   # the four services on SQLite
cargo bench -p crs-ratelimit --bench throughput; cargo bench -p crs-timers --bench clocks
EOF

# The services run only in CRS's turn (fresh databases each round): idle, they would still hold
# CPU for their relays, and PostgreSQL connections the ceilings' clients need.
for round in $(seq "$rounds"); do
  echo "== round $round of $rounds"
  "$bin/crs-bench" echo --target http://127.0.0.1:20099 --clients "$clients" --secs "$secs" --json "$results/round-$round-echo.json"
  pgbench_round "$results/round-$round-pgbench.json"
  # Intake alone: what its own path (checks, rate limits, group commit) stores while the other
  # three services take none of the two cores; its hand-offs to triage wait in its outbox.
  start_services postgres intake
  crs_load --clients "$clients" --secs "$secs" --databases "$pg/$(db_name intake)" --json "$results/round-$round-intake.json"
  intake_metrics "$results/round-$round-intake-metrics.txt"
  stop_services
  start_services postgres
  crs_load --clients "$clients" --secs "$secs" --databases "$(pg_databases)" --json "$results/round-$round-crs.json"
  stop_services
done
kill "$echo_pid" 2>/dev/null || true

start_services postgres
# Where the time goes, in a separate closed-loop run (its figures are not reported above):
# the CPU each process used (perf, when the kernel lets it sample) and what PostgreSQL's
# backends were doing, sampled ten times a second.
echo "== profile: $secs s closed loop with perf and PostgreSQL's wait events sampled"
(
  while sleep 0.1; do
    psql "$pg/postgres" -Atc "SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, 'running') \
      FROM pg_stat_activity WHERE datname LIKE 'crs_bench_%' AND state = 'active' AND pid <> pg_backend_pid()" 2>/dev/null
  done >"$work/waits.lines"
) &
waiter=$!
perf_pid=""
if command -v perf >/dev/null && perf record -a -o /dev/null -- true >/dev/null 2>&1; then
  perf record -a -F 199 -o "$work/perf.data" -- sleep "$secs" >/dev/null 2>&1 &
  perf_pid=$!
fi
crs_load --clients "$clients" --secs "$secs" --warmup-secs 0 --databases "$(pg_databases)" --json "$results/profile-load.json" >/dev/null || true
[ -n "$perf_pid" ] && wait "$perf_pid" 2>/dev/null || true
kill "$waiter" 2>/dev/null || true
sort "$work/waits.lines" | uniq -c | sort -rn | head -12 >"$results/waits.txt" || true
if [ -n "$perf_pid" ]; then
  perf report -i "$work/perf.data" --sort comm --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12 >"$results/cpu.txt" || true
fi

# Each open loop starts from an idle system: the profiled run's hand-offs would otherwise still
# be draining through it.
echo "== open loop at a rate this machine keeps up with: $light_rate/s for $light_secs s"
stop_services
start_services postgres
# Its first seconds warm the services up, unfollowed: in a service's first second its statements
# are prepared on each connection and PostgreSQL's caches are filled, and before the pools were
# opened at start (`database.min_connections`) that second held most of the hops' slow tail.
crs_load --rate "$light_rate" --secs "$light_secs" --warmup-secs 5 --follow 20 --decide --json "$results/open-light.json" || true
intake_metrics "$results/open-light-intake-metrics.txt"

echo "== open loop: $open_rate/s for $open_secs s, a sample followed to legal review and the webhook"
stop_services
start_services postgres
(
  samples=()
  while sleep 5; do
    row=()
    for svc in "${services[@]}"; do row+=("$(psql "$pg/$(db_name "$svc")" -Atc 'SELECT count(*) FROM outbox' 2>/dev/null || echo null)"); done
    (IFS=,; echo "[${row[*]}]") >>"$work/backlog.lines"
  done
) &
sampler=$!
crs_load --rate "$open_rate" --secs "$open_secs" --warmup-secs 0 --follow 200 --decide --json "$results/open.json" || true
kill "$sampler" 2>/dev/null || true
intake_metrics "$results/open-intake-metrics.txt"
[ -f "$work/backlog.lines" ] && (IFS=,; echo "[$(paste -sd, "$work/backlog.lines")]") >"$results/backlog.json"
stop_services

echo "== the same closed loop on SQLite"
start_services sqlite
crs_load --clients "$clients" --secs "$secs" --json "$results/sqlite.json" || true
stop_services

if [ "${BENCH_MICRO:-1}" != 0 ]; then
  echo "== rate limiter and SLA timers"
  cargo bench -p crs-ratelimit --bench throughput 2>/dev/null | tee "$results/limiter.txt"
  cargo bench -p crs-timers --bench clocks 2>/dev/null | tee "$results/timers.txt"
fi

"$bin/crs-bench" report --dir "$results" --out bench/RESULTS.md
