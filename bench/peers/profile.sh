#!/usr/bin/env bash
# Where the CPU goes in one fjord-bench workload, against each broker: `perf record -a`
# (cpu-clock, so it works where hardware counters do not) for the length of the run,
# then the share of samples per process and the broker's hottest symbols. Kafka runs
# with -XX:+DumpPerfMapAtExit -XX:+PreserveFramePointer, so its JIT-compiled methods
# are named.
#
#   cargo build --release --bin fjord --bin fjord-bench
#   bench/peers/profile.sh produce --records 6000000 --client rdkafka
set -euo pipefail
cd "$(dirname "$0")/../.."
bench=target/release/fjord-bench
fjord=${FJORD_BIN:-$PWD/target/release/fjord}
out=${PROFILE_DIR:-bench-results/profile}
mkdir -p "$out"

report() { # name perf-data broker-pid
    echo "== $1: samples per thread name (all CPUs, whole run)"
    { perf report -i "$2" --no-children --sort comm --stdio 2>/dev/null || true; } \
        | grep -E '^ +[0-9]' | head -12 || true
    echo "== $1: the broker process's hottest symbols (share of all samples)"
    { perf report -i "$2" --no-children --pid "$3" --sort dso,sym --stdio 2>/dev/null || true; } \
        | grep -E '^ +[0-9]' | head -15 || true
}

dir=$(mktemp -d)
fjord_pid=""
kafka_pid=""
cleanup() {
    if [ -n "$fjord_pid" ]; then kill "$fjord_pid" 2>/dev/null || true; fi
    if [ -n "$kafka_pid" ]; then bench/peers/kafka.sh stop "$kafka_pid" || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

# Fjord
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$fjord" --set "listeners=PLAINTEXT://127.0.0.1:$port" --set "log.dirs=$dir/fjord" \
    --set message.max.bytes=16777216 >/dev/null 2>&1 &
fjord_pid=$!
for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
perf record -F 499 -a -g -o "$out/fjord.perf" -- \
    "$bench" "$@" --bootstrap "127.0.0.1:$port" --broker-pid "$fjord_pid" --json >"$out/fjord.json" 2>/dev/null
kill "$fjord_pid"; wait "$fjord_pid" 2>/dev/null || true
fjord_pid=""

# Kafka
started=$(KAFKA_OPTS="-XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit -XX:+PreserveFramePointer" \
    bench/peers/kafka.sh start --dir "$dir/kafka" --set message.max.bytes=16777216)
kafka_pid=$(echo "$started" | sed -n 's/.*pid=\([0-9]*\).*/\1/p')
kafka=$(echo "$started" | sed -n 's/.*bootstrap=\([^ ]*\).*/\1/p')
perf record -F 499 -a -g -o "$out/kafka.perf" -- \
    "$bench" "$@" --bootstrap "$kafka" --broker-pid "$kafka_pid" --json >"$out/kafka.json" 2>/dev/null
bench/peers/kafka.sh stop "$kafka_pid" # the JVM writes /tmp/perf-PID.map as it exits
stopped_kafka=$kafka_pid
kafka_pid=""

echo "fjord: $(cat "$out/fjord.json")"
echo "kafka: $(cat "$out/kafka.json")"
report fjord "$out/fjord.perf" "$fjord_pid"
report kafka "$out/kafka.perf" "$stopped_kafka"
