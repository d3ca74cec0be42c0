#!/usr/bin/env bash
# wrk.sh measures Gatehouse's HTTP endpoints with wrk (keep-alive, one wrk
# thread, 64 connections by default) against a real `gatehouse serve` on
# 127.0.0.1, for the figures in BENCHMARKS.md:
#
#   POST /token            client_credentials grant (SQLite, and PostgreSQL
#                          when GATEHOUSE_TEST_POSTGRES is set)
#   POST /introspect       a JWT access token
#   GET  /.well-known/openid-configuration, /.well-known/jwks.json
#   POST /apikeys/verify   an API key in X-API-Key, the admin token as the
#                          calling service's credential
#
# Usage (from the repository root):
#
#   bench/wrk.sh [endpoint ...]         # default: all of the above
#   DURATION=10s CONNS=64 REPEAT=3 bench/wrk.sh cc
#   BIN=/tmp/gatehouse-old bench/wrk.sh cc     # another build
#   GATEHOUSE_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' bench/wrk.sh cc
#   CPUPROFILE=/tmp/cc bench/wrk.sh cc   # also record the server with perf(1)
#
# With CPUPROFILE=PREFIX, the first measured run of each endpoint is also
# recorded with `perf record -g` on the server process (PREFIX.ENDPOINT-DB.perf;
# read it with `perf report -i FILE --no-children`). perf samples the
# server from outside, so the server is the unmodified production build.
#
# Endpoints: cc (client credentials), introspect, discovery, jwks, apikey.
# Each run prints one line: requests/s, latency p50/p90/p99, and the count
# of non-2xx answers (which must be 0). The load average is printed before
# every run: wrk and the server share the machine's cores, so other jobs
# change every figure. The server runs with the environment it would get in
# production (no GOGC unless you export one).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
REPEAT=${REPEAT:-1}
WARMUP=${WARMUP:-2s}
ENDPOINTS=("$@")
if [ ${#ENDPOINTS[@]} -eq 0 ]; then
	ENDPOINTS=(cc introspect discovery jwks apikey)
fi

command -v wrk >/dev/null || { echo "wrk.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
if [ -n "${CPUPROFILE:-}" ]; then
	command -v perf >/dev/null || { echo "wrk.sh: CPUPROFILE needs perf (apt-get install linux-perf)" >&2; exit 2; }
fi
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
pids=()
schemas=()
cleanup() {
	for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
	for s in "${schemas[@]}"; do psql "$GATEHOUSE_TEST_POSTGRES" -qAtc "DROP SCHEMA $s CASCADE" >/dev/null 2>&1 || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# BIN=/path/to/gatehouse measures another build (say, the last commit's).
bin=${BIN:-}
if [ -z "$bin" ]; then
	(cd "$root" && go build -o "$tmp/gatehouse" ./cmd/gatehouse)
	bin=$tmp/gatehouse
fi
export GATEHOUSE_SECRET=bench-master-secret-0123456789abcdef
admin=bench-admin-token-0123456789abcdef

# json FIELD: reads one string field of a JSON object on stdin.
json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# free_port prints a free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start DB: starts a server on a fresh store (sqlite, or postgres in a fresh
# schema), with a client_credentials client and an API key; sets base, id,
# secret, apikey.
start() {
	local db=$1 data=$tmp/data-$1 args
	args=(--data "$data")
	if [ "$db" = postgres ]; then
		local schema
		schema=bench_$(python3 -c 'import secrets; print(secrets.token_hex(6))')
		psql "$GATEHOUSE_TEST_POSTGRES" -qAtc "CREATE SCHEMA $schema" >/dev/null
		schemas+=("$schema")
		args+=(--db "$GATEHOUSE_TEST_POSTGRES&search_path=$schema")
	fi
	local out
	out=$("$bin" client create "${args[@]}" --log-level warn --name load --grant-type client_credentials --scope read --json)
	id=$(json client_id <<<"$out")
	secret=$(json client_secret <<<"$out")
	apikey=$("$bin" apikey create "${args[@]}" --log-level warn --name load --json | json key)
	local port
	port=$(free_port)
	base=http://127.0.0.1:$port
	GATEHOUSE_ADMIN_TOKEN=$admin "$bin" serve "${args[@]}" --addr "127.0.0.1:$port" --log-level warn &
	pids+=($!)
	for _ in $(seq 300); do
		curl -fs "$base/readyz" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "wrk.sh: server for $db not ready" >&2
	exit 1
}

# lua NAME METHOD BODY HEADER...: writes a wrk script.
lua() {
	local f=$tmp/$1.lua method=$2 body=$3
	shift 3
	{
		echo "wrk.method = \"$method\""
		[ -n "$body" ] && echo "wrk.body = \"$body\""
		for h in "$@"; do
			echo "wrk.headers[\"${h%%: *}\"] = \"${h#*: }\""
		done
	} >"$f"
	echo "$f"
}

# summary.py LABEL LOAD < wrk output: prints one summary line.
cat >"$tmp/summary.py" <<'EOF'
import re, sys
label, load = sys.argv[1], sys.argv[2]
text = sys.stdin.read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
if not rps:
    sys.exit("wrk.sh: no result from wrk:\n" + text)
rps = rps.group(1)
lat = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", text, re.M))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errs = re.search(r"Socket errors:.*", text)
print(f"{label:<24} {float(rps):>9.0f} req/s  p50 {lat.get('50')}  p90 {lat.get('90')}  p99 {lat.get('99')}"
      f"  non-2xx {bad.group(1) if bad else 0}{'  ' + errs.group(0) if errs else ''}  (load {load})")
EOF

# run LABEL SCRIPT URL: warms up, then runs wrk REPEAT times.
run() {
	local label=$1 script=$2 url=$3 perf= perfpid=
	wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$script" "$url" >/dev/null
	if [ -n "${CPUPROFILE:-}" ]; then
		perf=$CPUPROFILE.$(tr -c 'a-z0-9\n' - <<<"$label" | tr -s - | sed 's/-$//').perf
		perf record -q -F 999 -g -o "$perf" -p "${pids[-1]}" 2>/dev/null &
		perfpid=$!
	fi
	for _ in $(seq "$REPEAT"); do
		local load out
		load=$(cut -d' ' -f1-3 /proc/loadavg)
		out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$script" "$url")
		if [ -n "$perf" ]; then
			kill -INT "$perfpid" 2>/dev/null || true
			wait "$perfpid" 2>/dev/null || true
			echo "# perf profile of the server: $perf" >&2
			perf=
		fi
		python3 "$tmp/summary.py" "$label" "$load" <<<"$out"
	done
}

dbs=(sqlite)
[ -n "${GATEHOUSE_TEST_POSTGRES:-}" ] && dbs+=(postgres)
echo "# $(nproc) CPUs, wrk -t$THREADS -c$CONNS -d$DURATION, $(go version | cut -d' ' -f3)"
for db in "${dbs[@]}"; do
	start "$db"
	basic=$(python3 -c 'import sys,base64,urllib.parse as u; print(base64.b64encode((u.quote(sys.argv[1],safe="")+":"+u.quote(sys.argv[2],safe="")).encode()).decode())' "$id" "$secret")
	for ep in "${ENDPOINTS[@]}"; do
		case $ep in
		cc)
			run "token cc ($db)" "$(lua cc POST 'grant_type=client_credentials&scope=read' \
				"Content-Type: application/x-www-form-urlencoded" "Authorization: Basic $basic")" "$base/token"
			;;
		introspect)
			tok=$(curl -fs -u "$id:$secret" -d grant_type=client_credentials -d scope=read "$base/token" | json access_token)
			run "introspect jwt ($db)" "$(lua introspect POST "token=$tok" \
				"Content-Type: application/x-www-form-urlencoded" "Authorization: Basic $basic")" "$base/introspect"
			;;
		discovery)
			if [ "$db" = sqlite ]; then run "discovery" "$(lua get GET '')" "$base/.well-known/openid-configuration"; fi
			;;
		jwks)
			if [ "$db" = sqlite ]; then run "jwks" "$(lua get GET '')" "$base/.well-known/jwks.json"; fi
			;;
		apikey)
			run "apikeys/verify ($db)" "$(lua apikey POST '' "Authorization: Bearer $admin" "X-API-Key: $apikey")" "$base/apikeys/verify"
			;;
		*)
			echo "wrk.sh: unknown endpoint $ep (cc, introspect, discovery, jwks, apikey)" >&2
			exit 2
			;;
		esac
	done
	kill -INT "${pids[-1]}" && wait "${pids[-1]}" 2>/dev/null || true
	unset 'pids[-1]'
done
