#!/usr/bin/env bash
# Runs the Helm chart's tests (charts/crs/tests) with Helm's own engine, or packages the chart.
#
#   scripts/chart-test.sh [pytest arguments]   render, lint, validate, and run --check-config on
#                                              the built service binaries
#   scripts/chart-test.sh --package [DIR]      package charts/crs into DIR (default dist/)
#
# The tools (helm-python-sdk, kubernetes-validate, pytest, PyYAML, cryptography, pinned in
# charts/crs/tests/requirements.txt) go into a virtualenv under the cargo target directory,
# installed from PyPI on first use and again whenever the pins change. The tests run the debug
# binaries in $CARGO_TARGET_DIR/debug (default target/debug): build them first (make test does).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$root/$target" ;; esac
export CARGO_TARGET_DIR="$target" PYTHONDONTWRITEBYTECODE=1
venv="$target/chart-venv"
requirements=charts/crs/tests/requirements.txt

missing() {
  echo "chart-test: $*" >&2
  exit 1
}

python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
    "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python=$(command -v "$candidate")
    break
  fi
done
[ -n "$python" ] || missing "needs Python 3.11 or newer (Debian: apt-get install python3)"
"$python" -c 'import venv, ensurepip' 2>/dev/null ||
  missing "needs Python's venv and ensurepip modules (Debian: apt-get install python3-venv)"

stamp="$venv/.requirements"
if ! [ -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
  echo "chart-test: installing the chart test tools into $venv" >&2
  rm -rf "$venv"
  mkdir -p "$target"
  "$python" -m venv "$venv" || missing "cannot create a virtualenv at $venv with $python"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" ||
    missing "cannot install $requirements from PyPI (is it reachable? a proxy set in PIP_INDEX_URL?)"
  cp "$requirements" "$stamp"
fi

if [ "${1:-}" = "--package" ]; then
  dest=${2:-dist}
  mkdir -p "$dest"
  exec "$venv/bin/python" -c '
import sys, helm_python as helm
print(helm.package(sys.argv[1], destination=sys.argv[2]))
' charts/crs "$dest"
fi

for bin in crs-intake crs-triage crs-legal-review crs-notification; do
  [ -x "$target/debug/$bin" ] || missing "$target/debug/$bin is missing: run cargo build --bins first"
done

exec "$venv/bin/python" -m pytest -p no:cacheprovider -q charts/crs/tests "$@"
