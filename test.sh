#!/usr/bin/env bash
# The whole Gatehouse test suite, with all set-up a fresh machine needs.
# Usage: ./test.sh            (FUZZTIME=30s ./test.sh fuzzes longer; SKIP_FUZZ=1 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\n==> %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# --- Go ---------------------------------------------------------------------
if ! command -v go >/dev/null 2>&1; then
  [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || { echo "Go is required (https://go.dev/dl)"; exit 1; }

# --- PostgreSQL (the multi-replica store is tested against a real server) ---
: "${GATEHOUSE_TEST_POSTGRES:=postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
export GATEHOUSE_TEST_POSTGRES
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! command -v pg_isready >/dev/null 2>&1; then apt_install postgresql; fi
if ! pg_up; then
  log "starting PostgreSQL"
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql; fi
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL did not start"; exit 1; }
fi
if ! psql "$GATEHOUSE_TEST_POSTGRES" -qAtc 'select 1' >/dev/null 2>&1; then
  log "creating database test"
  # Local, trust-auth servers: connect as postgres over TCP, or via the socket as the postgres user.
  psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test' 2>/dev/null \
    || as_root su postgres -c "psql -qc 'CREATE DATABASE test'" \
    || true
  psql "$GATEHOUSE_TEST_POSTGRES" -qAtc 'select 1' >/dev/null || { echo "cannot reach $GATEHOUSE_TEST_POSTGRES"; exit 1; }
fi

# --- Redis (shared rate limits are tested against a real server) -------------
# Tests use database 15 under their own key prefixes and delete their keys;
# the fallback tests start and kill private redis-server processes.
: "${GATEHOUSE_TEST_REDIS:=redis://127.0.0.1:6379/15}"
export GATEHOUSE_TEST_REDIS
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then apt_install redis-server; fi
if ! redis_up; then
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/gatehouse-redis.log
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
  redis_up || { echo "Redis did not start (see /tmp/gatehouse-redis.log)"; exit 1; }
fi

# --- Browser and interop peers (Debian packages) -------------------------------
# Headless Chromium drives the login and consent pages; Debian's Python
# libraries (used by /usr/bin/python3, not whatever python3 is first on PATH)
# are independent OAuth/JWT clients for the interop tests.
apt_install chromium python3-jwt python3-requests-oauthlib

# --- Static checks -----------------------------------------------------------
log "gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change:"; echo "$unformatted"; exit 1; fi
go vet ./...
(cd bench && go vet ./...)

# --- Tests ---------------------------------------------------------------------
log "go test ./... (SQLite and PostgreSQL)"
go test -count=1 -timeout 10m ./...

log "benchmarks compile and run once"
go test -count=1 -run '^$' -bench . -benchtime 1x ./... >/dev/null
(cd bench && go test -count=1 -run '^$' -bench . -benchtime 1x ./... >/dev/null)

# --- Fuzzing (brief; run longer by hand with FUZZTIME=10m) ----------------------
if [ "${SKIP_FUZZ:-}" != 1 ]; then
  fuzztime="${FUZZTIME:-5s}"
  log "fuzzing each target for $fuzztime"
  for pkg in $(go list ./...); do
    dir=$(go list -f '{{.Dir}}' "$pkg")
    for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
      echo "fuzz $pkg $target"
      ok=
      for attempt in 1 2; do
        if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/gatehouse-fuzz.log 2>&1; then
          ok=1; break
        fi
        # Go's fuzzer can end a run with a bare "context deadline exceeded"
        # when -fuzztime runs out while it is minimising a new input; that
        # is no failing input. A real failure writes one: never retried.
        if grep -q 'Failing input written' /tmp/gatehouse-fuzz.log \
           || ! grep -q 'context deadline exceeded' /tmp/gatehouse-fuzz.log; then
          break
        fi
        echo "  (fuzzer stopped on its own deadline, not on an input; running again)"
      done
      [ -n "$ok" ] || { cat /tmp/gatehouse-fuzz.log; exit 1; }
    done
  done
fi

log "all tests passed"
