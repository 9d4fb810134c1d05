#!/usr/bin/env bash
# Runs the benchmark suite of docs/benchmarks.md and regenerates its tables and charts:
# the JSON results and SVG charts go to docs/bench/, the tables replace the generated
# section of docs/benchmarks.md.
#
#   scripts/bench.sh                    # everything (about 25 minutes with a 10-minute soak)
#   scripts/bench.sh matrix idle        # only some steps: matrix idle bandwidth poll soak fault fault-nats report
#   BENCH_DURATION=10s BENCH_SOAK=2m scripts/bench.sh
#
# Each step spawns its own cmd/realtimed (fresh data directory, free loopback port).
set -euo pipefail
cd "$(dirname "$0")/.."

# 5,000 clients need more than 10,000 descriptors between the bench and the server.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

OUT=${BENCH_OUT:-docs/bench}
DUR=${BENCH_DURATION:-20s}
SOAK=${BENCH_SOAK:-10m}
STEPS=${*:-matrix idle bandwidth poll soak fault fault-nats report}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/realtime-bench" ./cmd/realtime-bench
go build -o "$tmp/realtimed" ./cmd/realtimed
bench() { "$tmp/realtime-bench" "$1" -server-bin "$tmp/realtimed" "${@:2}"; }
mkdir -p "$OUT"
echo "machine: $(nproc) cores, $(uptime)" >&2

for step in $STEPS; do
	case $step in
	matrix)
		for c in 100 1000 5000; do
			for r in 100 1000; do
				bench load -clients "$c" -rate "$r" -duration "$DUR" -json "$OUT/load-${c}x${r}.json"
				sleep 5 # let the previous run's processes and sockets go before the next one
			done
		done ;;
	idle) bench idle -clients 5000 -json "$OUT/idle-5000.json" ;;
	bandwidth) bench bandwidth -payloads 200,2000 -duration 15s -json "$OUT/bandwidth.json" ;;
	poll)
		# Needs GET /v2/realtime/poll in the server; skipped with a message otherwise.
		bench poll -clients 200 -channels 10 -rate 100 -duration "$DUR" -json "$OUT/poll.json" ||
			echo "poll baseline skipped (see the error above)" >&2 ;;
	soak) bench soak -clients 1000 -churn 0.02 -rate 200 -duration "$SOAK" -json "$OUT/soak.json" ;;
	fault) bench fault -clients 100 -rate 200 -duration 30s -kills 2 -json "$OUT/fault.json" ;;
	fault-nats) bench fault -clients 100 -rate 200 -duration 30s -kills 2 -nats-nodes 3 -json "$OUT/fault-nats.json" ;;
	report) "$tmp/realtime-bench" report -dir "$OUT" -doc docs/benchmarks.md ;;
	*) echo "unknown step $step" >&2; exit 2 ;;
	esac
done
