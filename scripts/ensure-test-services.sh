#!/usr/bin/env bash
# Makes sure the tests' PostgreSQL (127.0.0.1:5432, user postgres) and Redis (REDIS_URL or
# 127.0.0.1:6379) answer, starting the machine's own servers when they are installed but
# stopped. Says exactly what is missing otherwise.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }

if [ -z "${CRS_TEST_POSTGRES_URL:-}" ] && ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL" >&2
    for version in /etc/postgresql/*; do
      pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start || true
    done
    for _ in $(seq 50); do pg_up && break; sleep 0.2; done
  fi
  pg_up || {
    echo "the end-to-end tests need PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth)," >&2
    echo "or CRS_TEST_POSTGRES_URL=postgres://user@host:port/postgres; Debian: apt-get install postgresql" >&2
    exit 1
  }
fi

if [ -z "${REDIS_URL:-}" ] && ! redis_up; then
  if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's redis-server package" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
  fi
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting Redis on 127.0.0.1:6379 (nothing kept on disk)" >&2
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp \
      --logfile /tmp/crs-test-redis.log
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  fi
  redis_up || {
    echo "the tests need Redis on 127.0.0.1:6379 or REDIS_URL; Debian: apt-get install redis-server" >&2
    exit 1
  }
fi
