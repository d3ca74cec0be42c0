#!/usr/bin/env bash
# fuzz.sh runs Gatehouse's fuzz targets for a long time, by hand (CI fuzzes
# each for 5 s in ./test.sh), and prints one line per target for the table
# in RELIABILITY.md: package, target, executions, new interesting inputs,
# and the result.
#
# Usage (from anywhere in the repository):
#
#   bench/fuzz.sh                                  # every target, 10 min each
#   FUZZTIME=10m PAR=2 bench/fuzz.sh token:FuzzVerify ./internal/apikey:FuzzParse
#   SKIP='FuzzVerify FuzzExtract' bench/fuzz.sh    # every target but these
#
# Each target runs with one worker (-parallel 1); PAR targets run at once
# (default 2, one per core on a 2-core machine). A failing input is written
# to the package's testdata/fuzz/ by `go test` itself, as always; the line
# then says FAIL and the log is kept. Logs: $LOGDIR (default a temporary
# directory, printed first).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-10m}
PAR=${PAR:-2}
SKIP=${SKIP:-}
LOGDIR=${LOGDIR:-$(mktemp -d /tmp/gatehouse-fuzz.XXXXXX)}
mkdir -p "$LOGDIR"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for pkg in $(go list ./...); do
		dir=$(go list -f '{{.Dir}}' "$pkg")
		for t in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
			targets+=("$pkg:$t")
		done
	done
fi

# one PKG:TARGET: fuzzes one target and prints its summary line.
one() {
	local pkg=${1%%:*} t=${1##*:} log status
	log=$LOGDIR/$(basename "$pkg").$t.log
	if go test -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" -parallel 1 "$pkg" >"$log" 2>&1; then
		status=ok
	elif grep -q 'Failing input written' "$log"; then
		status=FAIL
	elif grep -q 'context deadline exceeded' "$log"; then
		# Go's fuzzer can stop with a bare deadline error when -fuzztime
		# runs out while it minimises a new input: no failing input.
		status='ok (stopped while minimising)'
	else
		status=FAIL
	fi
	# The fuzzer's last progress line: "fuzz: elapsed: 10m0s, execs: N
	# (R/sec), new interesting: M (total: T)".
	local last
	last=$(grep -o 'elapsed: .*' "$log" | tail -1)
	printf '%s %s | %s | %s | %s\n' "$pkg" "$t" "${last:-no progress line}" "$status" "$(date -u +%H:%M)"
}

echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $FUZZTIME per target, $PAR at once, logs in $LOGDIR, $(go version | cut -d' ' -f3)"
running=0
for tg in "${targets[@]}"; do
	case " $SKIP " in *" ${tg##*:} "*) continue ;; esac
	one "$tg" &
	running=$((running + 1))
	if [ "$running" -ge "$PAR" ]; then
		wait -n
		running=$((running - 1))
	fi
done
wait
