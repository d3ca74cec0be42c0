#!/usr/bin/env bash
# gateway.sh measures `gatehouse gateway` against a plain
# httputil.ReverseProxy with no authentication (bench/cmd/benchproxy), in
# front of the same trivial upstream, side by side in one run, for
# BENCHMARKS.md (issue 5):
#
#   plain      wrk → benchproxy proxy → upstream
#   plain-tuned  the same with the gateway's buffer pool and GOGC=400
#   gw-jwt     wrk → gatehouse gateway (JWT access token, cached) → upstream
#   gw-apikey  wrk → gatehouse gateway (API key, cached) → upstream
#   gw-opaque  wrk → gatehouse gateway (opaque access token, cached) → upstream
#
# Each round runs the four one after the other, so that they see the same
# machine; ROUNDS rounds. Two loads: CONNS connections (throughput) and one
# connection (added latency: the gateway's p50/p99 minus the plain proxy's).
#
# Usage (from the repository root):
#
#   bench/gateway.sh
#   DURATION=10s ROUNDS=3 CONNS=64 bench/gateway.sh
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}

command -v wrk >/dev/null || { echo "gateway.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

(cd "$root" && go build -o "$tmp/gatehouse" ./cmd/gatehouse)
(cd "$root/bench" && go build -o "$tmp/benchproxy" ./cmd/benchproxy)
bin=$tmp/gatehouse
export GATEHOUSE_SECRET=bench-master-secret-0123456789abcdef
args=(--data "$tmp/data" --log-level warn)

json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
	for _ in $(seq 300); do
		curl -s -o /dev/null "$1" && return 0
		sleep 0.05
	done
	echo "gateway.sh: $1 not answering" >&2
	exit 1
}

api=https://api.bench.example
internal=http://upstream.bench.internal

# Clients and credentials, created offline on the store.
gw=$("$bin" client create "${args[@]}" --name gateway --gateway \
	--grant-type urn:ietf:params:oauth:grant-type:token-exchange \
	--scope read --audience "$api" --exchange-audience "$internal" --json)
gw_id=$(json client_id <<<"$gw")
json client_secret <<<"$gw" >"$tmp/gw.secret"
app=$("$bin" client create "${args[@]}" --name app --grant-type client_credentials --scope read --audience "$api" --json)
app_id=$(json client_id <<<"$app")
app_secret=$(json client_secret <<<"$app")
opq=$("$bin" client create "${args[@]}" --name opaque-app --grant-type client_credentials --scope read --audience "$api" \
	--access-token-format opaque --access-token-ttl 1h --json)
opq_id=$(json client_id <<<"$opq")
opq_secret=$(json client_secret <<<"$opq")
apikey=$("$bin" apikey create "${args[@]}" --name bench --scope read --json | json key)

gh_port=$(free_port)
issuer=http://127.0.0.1:$gh_port
"$bin" serve "${args[@]}" --addr "127.0.0.1:$gh_port" &
pids+=($!)
wait_http "$issuer/readyz"

up_port=$(free_port)
"$tmp/benchproxy" upstream -listen "127.0.0.1:$up_port" >/dev/null &
pids+=($!)
plain_port=$(free_port)
"$tmp/benchproxy" proxy -listen "127.0.0.1:$plain_port" -upstream "http://127.0.0.1:$up_port" >/dev/null &
pids+=($!)
# The same proxy with the gateway's buffer pool and GOGC=400: what is left
# of the difference is the gateway's own work.
tuned_port=$(free_port)
GOGC=400 "$tmp/benchproxy" proxy -pool -listen "127.0.0.1:$tuned_port" -upstream "http://127.0.0.1:$up_port" >/dev/null &
pids+=($!)

gwp=$(free_port)
gwadmin=$(free_port)
cat >"$tmp/gateway.toml" <<TOML
listen = "127.0.0.1:$gwp"
admin_listen = "127.0.0.1:$gwadmin"
issuer = "$issuer"
audience = "$api"
client_id = "$gw_id"
client_secret_file = "$tmp/gw.secret"

[[route]]
path = "/"
upstream = "http://127.0.0.1:$up_port"
audience = "$internal"
all_of = ["read"]
TOML
"$bin" gateway --config "$tmp/gateway.toml" --log-level warn &
pids+=($!)
wait_http "http://127.0.0.1:$gwp/"
wait_http "http://127.0.0.1:$plain_port/"
wait_http "http://127.0.0.1:$tuned_port/"

jwt=$(curl -fs -u "$app_id:$app_secret" -d grant_type=client_credentials -d scope=read "$issuer/token" | json access_token)
opaque=$(curl -fs -u "$opq_id:$opq_secret" -d grant_type=client_credentials -d scope=read "$issuer/token" | json access_token)

lua() {
	local f=$tmp/$1.lua
	shift
	{
		for h in "$@"; do echo "wrk.headers[\"${h%%: *}\"] = \"${h#*: }\""; done
	} >"$f"
	echo "$f"
}
plain_lua=$(lua plain)
jwt_lua=$(lua jwt "Authorization: Bearer $jwt")
key_lua=$(lua key "X-API-Key: $apikey")
opq_lua=$(lua opaque "Authorization: Bearer $opaque")

# Every credential must get through before anything is measured.
for c in "Authorization: Bearer $jwt" "X-API-Key: $apikey" "Authorization: Bearer $opaque"; do
	code=$(curl -s -o /dev/null -w '%{http_code}' -H "$c" "http://127.0.0.1:$gwp/x")
	[ "$code" = 200 ] || { echo "gateway.sh: gateway answered $code for ${c%%:*}" >&2; exit 1; }
done

cat >"$tmp/summary.py" <<'PY'
import re, sys
label, load = sys.argv[1], sys.argv[2]
text = sys.stdin.read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
if not rps:
    sys.exit("gateway.sh: no result from wrk:\n" + text)
lat = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", text, re.M))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
print(f"{label:<22} {float(rps.group(1)):>9.0f} req/s  p50 {lat.get('50')}  p90 {lat.get('90')}  p99 {lat.get('99')}"
      f"  non-2xx {bad.group(1) if bad else 0}  (load {load})")
PY

run() { # LABEL CONNS SCRIPT URL
	local out load
	wrk -t1 -c"$2" -d"$WARMUP" -s "$3" "$4" >/dev/null
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	out=$(wrk -t1 -c"$2" -d"$DURATION" --latency -s "$3" "$4")
	python3 "$tmp/summary.py" "$1 c=$2" "$load" <<<"$out"
}

echo "# $(nproc) CPUs, wrk -t1 -d$DURATION, $(go version | cut -d' ' -f3), $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
	echo "## round $round"
	for conns in "$CONNS" 1; do
		run plain "$conns" "$plain_lua" "http://127.0.0.1:$plain_port/x"
		run plain-tuned "$conns" "$plain_lua" "http://127.0.0.1:$tuned_port/x"
		run gw-jwt "$conns" "$jwt_lua" "http://127.0.0.1:$gwp/x"
		run gw-apikey "$conns" "$key_lua" "http://127.0.0.1:$gwp/x"
		run gw-opaque "$conns" "$opq_lua" "http://127.0.0.1:$gwp/x"
	done
done

# The common case must make no call to Gatehouse: exchanges stay at one per
# credential, everything else is a cache hit.
echo "# gateway counters after the runs:"
curl -s "http://127.0.0.1:$gwadmin/metrics" | grep -E '^gatehouse_gateway_(token_exchanges_total|internal_token_cache_hits_total)'
