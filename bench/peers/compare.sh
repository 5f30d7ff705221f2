#!/usr/bin/env bash
# Fjord next to Apache Kafka, side by side in one run on this machine: every workload of
# the README's comparison table, with each client, against each broker, in alternating
# order (Fjord first in odd rounds, Kafka first in even ones), ROUNDS times. Each run
# spawns a fresh broker (Fjord: target/release/fjord; Kafka: bench/peers/kafka.sh), so CPU
# and peak RSS are that run's. Results go to OUT (JSON lines); the table of medians is
# printed at the end by bench/peers/table.py and can be reprinted from OUT.
#
#   cargo build --release --bin fjord --bin fjord-bench
#   bench/peers/compare.sh [--rounds 3] [--out bench-results/compare.jsonl] [--clients "fjord rdkafka java"] [--only ROW]
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=3
out=bench-results/compare.jsonl
clients="fjord rdkafka java"
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$(dirname "$out")"
: >"$out"
bench=target/release/fjord-bench
export FJORD_BIN=${FJORD_BIN:-$PWD/target/release/fjord}
[ -x "$bench" ] && [ -x "$FJORD_BIN" ] || {
    echo "build first: cargo build --release --bin fjord --bin fjord-bench" >&2
    exit 1
}
bench/peers/kafka.sh classpath >/dev/null # resolve Kafka's jars before timing anything

# row name | fjord-bench arguments
rows=(
    "produce 100 B, acks=1|produce --records 3000000 --record-size 100 --acks 1"
    "produce 100 B, acks=all|produce --records 3000000 --record-size 100 --acks all"
    "consume 100 B|consume --records 10000000 --record-size 100"
    "produce 1 MiB, acks=1|produce --records 1000 --record-size 1048576 --acks 1"
    "consume 1 MiB|consume --records 1000 --record-size 1048576"
    "e2e at 50,000 records/s, acks=1|e2e --records 500000 --rate 50000 --acks 1"
    "e2e at 50,000 records/s, acks=all|e2e --records 500000 --rate 50000 --acks all"
    # librdkafka with linger.ms=0 falls behind once acknowledgements take a millisecond.
    "e2e at 50,000 records/s, acks=1, linger.ms=1|e2e --records 500000 --rate 50000 --acks 1 --linger-ms 1"
    "e2e at 50,000 records/s, acks=all, linger.ms=1|e2e --records 500000 --rate 50000 --acks all --linger-ms 1"
    "produce 100 B, 10,000 partitions, acks=1|produce --records 3000000 --record-size 100 --partitions 10000 --acks 1"
)

run() {
    local round=$1 row=$2 client=$3 broker=$4 args=$5 spawn
    case "$broker" in
        fjord) spawn=--spawn-broker ;;
        kafka) spawn="--spawn-peer kafka" ;;
    esac
    local result
    # shellcheck disable=SC2086
    if result=$("$bench" $args $spawn --client "$client" --json 2>"$out.stderr"); then
        echo "round $round  $row  $client on $broker: $(python3 bench/peers/table.py --one "$result")" >&2
    else
        echo "round $round  $row  $client on $broker: FAILED: $(tail -n 3 "$out.stderr")" >&2
        result=null
    fi
    python3 -c 'import json,sys; print(json.dumps({"round": int(sys.argv[1]), "row": sys.argv[2], "client": sys.argv[3], "broker": sys.argv[4], "result": json.loads(sys.argv[5])}))' \
        "$round" "$row" "$client" "$broker" "$result" >>"$out"
}

for round in $(seq 1 "$rounds"); do
    if [ $((round % 2)) -eq 1 ]; then order="fjord kafka"; else order="kafka fjord"; fi
    for entry in "${rows[@]}"; do
        row=${entry%%|*}
        args=${entry#*|}
        if [ -n "$only" ] && [[ "$row" != *"$only"* ]]; then continue; fi
        for client in $clients; do
            for broker in $order; do
                run "$round" "$row" "$client" "$broker" "$args"
            done
        done
    done
done
rm -f "$out.stderr"
python3 bench/peers/table.py "$out"
