#!/usr/bin/env bash
# Prints the Redis URL CRS should use: $REDIS_URL when set; otherwise starts a private
# redis-server (nothing kept on disk) on a spare local port, installing Debian's package if it
# is missing and this machine allows it. Its pid goes to data/redis.pid.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${REDIS_URL:-}" ]; then
  echo "$REDIS_URL"
  exit 0
fi

if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "redis-server is missing; installing Debian's redis-server package" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    echo "redis-server is missing; installing Debian's redis-server package with sudo" >&2
    sudo apt-get update -qq >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
  else
    echo "CRS needs Redis: install redis-server (Debian/Ubuntu: apt-get install redis-server," >&2
    echo "macOS: brew install redis) or set REDIS_URL=redis://host:port" >&2
    exit 1
  fi
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
mkdir -p data/logs
for port in $(seq 6390 6420); do
  if port_free "$port"; then
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
      --pidfile "$PWD/data/redis.pid" --logfile "$PWD/data/logs/redis.log" --dir "$PWD/data" >&2
    for _ in $(seq 50); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "redis://127.0.0.1:$port"
        exit 0
      fi
      sleep 0.1
    done
    echo "redis-server did not start on port $port; see data/logs/redis.log" >&2
    exit 1
  fi
done
echo "no free port between 6390 and 6420 for a private redis-server; set REDIS_URL" >&2
exit 1
