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
#   REPLICAS=2 WRKS=2 GATEHOUSE_TEST_POSTGRES=... bench/wrk.sh cc apikey
#
# REPLICAS=N starts N `gatehouse serve` processes on one store (PostgreSQL
# only). WRKS=M splits the CONNS connections over M wrk processes run at
# once, process i loading replica i mod N, standing in for a load balancer
# without spending CPU on one; the line then shows the summed requests/s
# and the worst p50/p90/p99 of the M processes. Compare REPLICAS=1 WRKS=2
# with REPLICAS=2 WRKS=2: the load generator is the same, only the number
# of replicas changes.
#
# RATE=R replaces wrk (closed loop: each connection sends again as soon as
# it has an answer, so at saturation latency is in-flight / throughput) by
# bench/cmd/pacedload (open loop): R requests/s offered over the CONNS
# connections, each latency measured from when the request was due.
#   RATE=10000 bench/wrk.sh cc       # p99 at 10,000 grants/s, 64 connections
#
# SERVE_PREFIX runs each server under a command the same way, e.g.
# SERVE_PREFIX='taskset -c 0' WRK_PREFIX='taskset -c 1' gives the server
# and wrk a CPU each (Go then sizes GOMAXPROCS to the one CPU it may use).
#
# WRK_PREFIX runs wrk under a command, such as WRK_PREFIX='nice -n 10' to
# see how the scheduling between wrk and the server moves the tail.
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
REPLICAS=${REPLICAS:-1}
RATE=${RATE:-}
WRKS=${WRKS:-1}
ENDPOINTS=("$@")
if [ ${#ENDPOINTS[@]} -eq 0 ]; then
	ENDPOINTS=(cc introspect discovery jwks apikey)
fi

if [ "$REPLICAS" -gt 1 ] && [ -z "${GATEHOUSE_TEST_POSTGRES:-}" ]; then
	echo "wrk.sh: REPLICAS needs GATEHOUSE_TEST_POSTGRES (replicas share one PostgreSQL)" >&2
	exit 2
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
pacedload=
if [ -n "$RATE" ]; then
	(cd "$root/bench" && go build -o "$tmp/pacedload" ./cmd/pacedload)
	pacedload=$tmp/pacedload
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
	bases=()
	local i port
	for i in $(seq "$REPLICAS"); do
		port=$(free_port)
		GATEHOUSE_ADMIN_TOKEN=$admin ${SERVE_PREFIX:-} "$bin" serve "${args[@]}" --addr "127.0.0.1:$port" --log-level warn &
		pids+=($!)
		bases+=("http://127.0.0.1:$port")
		ready "${bases[-1]}"
	done
	base=${bases[0]}
}

# ready URL: waits for a server's /readyz.
ready() {
	for _ in $(seq 300); do
		curl -fs "$1/readyz" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "wrk.sh: server $1 not ready" >&2
	exit 1
}

# lua NAME METHOD BODY HEADER...: writes a wrk script, and the same
# request as pacedload arguments in SCRIPT.args.
lua() {
	local f=$tmp/$1.lua method=$2 body=$3
	shift 3
	{
		echo "-method"
		echo "$method"
		[ -n "$body" ] && printf '%s\n' -body "$body"
		for h in "$@"; do printf '%s\n' -H "$h"; done
	} >"$f.args"
	{
		echo "wrk.method = \"$method\""
		[ -n "$body" ] && echo "wrk.body = \"$body\""
		for h in "$@"; do
			echo "wrk.headers[\"${h%%: *}\"] = \"${h#*: }\""
		done
	} >"$f"
	echo "$f"
}

# summary.py LABEL LOAD FILE...: prints one summary line for the outputs of
# the wrk processes of one run (summed requests/s, worst percentiles).
cat >"$tmp/summary.py" <<'EOF'
import re, sys
label, load, files = sys.argv[1], sys.argv[2], sys.argv[3:]
units = {"us": 1e-3, "ms": 1.0, "s": 1e3}
def ms(v):
    n, u = re.fullmatch(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * units[u]
total, worst, bad, errs = 0.0, {}, 0, []
for f in files:
    text = open(f).read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps:
        sys.exit("wrk.sh: no result from wrk:\n" + text)
    total += float(rps.group(1))
    for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", text, re.M):
        worst[p] = max(worst.get(p, 0.0), ms(v))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    bad += int(m.group(1)) if m else 0
    m = re.search(r"Socket errors:.*", text)
    if m:
        errs.append(m.group(0))
lat = {p: f"{v:.2f}ms" for p, v in worst.items()}
print(f"{label:<24} {total:>9.0f} req/s  p50 {lat.get('50')}  p90 {lat.get('90')}  p99 {lat.get('99')}"
      f"  non-2xx {bad}{'  ' + '; '.join(errs) if errs else ''}  (load {load})")
EOF

# load DURATION SCRIPT PATH OUT: runs the WRKS wrk processes at once, process
# i against replica i mod REPLICAS, writing their outputs to OUT.1 .. OUT.M.
load() {
	local d=$1 script=$2 path=$3 out=$4 i p wp=()
	rm -f "$out".*
	if [ -n "$RATE" ]; then
		local args=()
		mapfile -t args <"$script.args"
		"$pacedload" -label "$label" -url "${bases[0]}$path" -rate "$RATE" -conns "$CONNS" -d "$d" -warmup 0s "${args[@]}" >"$out.1"
		return
	fi
	for i in $(seq "$WRKS"); do
		${WRK_PREFIX:-} wrk -t"$THREADS" -c"$((CONNS / WRKS))" -d"$d" --latency -s "$script" "${bases[$(((i - 1) % REPLICAS))]}$path" >"$out.$i" &
		wp+=($!)
	done
	for p in "${wp[@]}"; do wait "$p"; done
}

# run LABEL SCRIPT PATH: warms up, then runs wrk REPEAT times.
run() {
	local label=$1 script=$2 path=$3 perf= perfpid=
	load "$WARMUP" "$script" "$path" "$tmp/warmup"
	if [ -n "${CPUPROFILE:-}" ]; then
		perf=$CPUPROFILE.$(tr -c 'a-z0-9\n' - <<<"$label" | tr -s - | sed 's/-$//').perf
		perf record -q -F 999 -g -o "$perf" -p "${pids[-1]}" 2>/dev/null &
		perfpid=$!
	fi
	for _ in $(seq "$REPEAT"); do
		local avg
		avg=$(cut -d' ' -f1-3 /proc/loadavg)
		load "$DURATION" "$script" "$path" "$tmp/out"
		if [ -n "$perf" ]; then
			kill -INT "$perfpid" 2>/dev/null || true
			wait "$perfpid" 2>/dev/null || true
			echo "# perf profile of the server: $perf" >&2
			perf=
		fi
		if [ -n "$RATE" ]; then
			echo "$(cat "$tmp/out.1")  (load $avg)"
		else
			python3 "$tmp/summary.py" "$label" "$avg" "$tmp"/out.*
		fi
	done
}

dbs=(sqlite)
[ -n "${GATEHOUSE_TEST_POSTGRES:-}" ] && dbs+=(postgres)
[ "$REPLICAS" -gt 1 ] && dbs=(postgres)
if [ -n "$RATE" ]; then
	echo "# $(nproc) CPUs, pacedload $RATE/s over $CONNS connections, -d$DURATION, $(go version | cut -d' ' -f3)"
else
	echo "# $(nproc) CPUs, $REPLICAS replica(s), $WRKS x wrk -t$THREADS -c$((CONNS / WRKS)) -d$DURATION, $(go version | cut -d' ' -f3)"
fi
for db in "${dbs[@]}"; do
	start "$db"
	basic=$(python3 -c 'import sys,base64,urllib.parse as u; print(base64.b64encode((u.quote(sys.argv[1],safe="")+":"+u.quote(sys.argv[2],safe="")).encode()).decode())' "$id" "$secret")
	for ep in "${ENDPOINTS[@]}"; do
		case $ep in
		cc)
			run "token cc ($db)" "$(lua cc POST 'grant_type=client_credentials&scope=read' \
				"Content-Type: application/x-www-form-urlencoded" "Authorization: Basic $basic")" /token
			;;
		introspect)
			tok=$(curl -fs -u "$id:$secret" -d grant_type=client_credentials -d scope=read /token | json access_token)
			run "introspect jwt ($db)" "$(lua introspect POST "token=$tok" \
				"Content-Type: application/x-www-form-urlencoded" "Authorization: Basic $basic")" /introspect
			;;
		discovery)
			if [ "$db" = sqlite ]; then run "discovery" "$(lua get GET '')" /.well-known/openid-configuration; fi
			;;
		jwks)
			if [ "$db" = sqlite ]; then run "jwks" "$(lua get GET '')" /.well-known/jwks.json; fi
			;;
		apikey)
			run "apikeys/verify ($db)" "$(lua apikey POST '' "Authorization: Bearer $admin" "X-API-Key: $apikey")" /apikeys/verify
			;;
		*)
			echo "wrk.sh: unknown endpoint $ep (cc, introspect, discovery, jwks, apikey)" >&2
			exit 2
			;;
		esac
	done
	for pid in "${pids[@]}"; do kill -INT "$pid" && wait "$pid" 2>/dev/null || true; done
	pids=()
done
