#!/usr/bin/env bash
# Apache Kafka's broker as Fjord's benchmark peer, from Maven Central (no download site).
#
#   bench/peers/kafka.sh start [--dir DIR] [--port PORT] [--set KEY=VALUE]...
#                          format and start a single-node KRaft broker+controller on
#                          127.0.0.1; prints `pid=N bootstrap=HOST:PORT dir=DIR`
#   bench/peers/kafka.sh stop PID|--dir DIR                stop it (SIGTERM, then SIGKILL)
#   bench/peers/kafka.sh tool CLASS [ARGS...]              run a Kafka class (kafka-tools'
#                          ProducerPerformance, ConsumerPerformance, ...) on the same classpath
#   bench/peers/kafka.sh classpath                         print that classpath
#
# The jars (kafka_2.13 and kafka-tools, KAFKA_VERSION in bench/peers/kafka/pom.xml) are
# resolved with Maven into bench/peers/kafka/target/libs on first use; Maven's own cache
# (~/.m2) makes later runs offline. The broker runs with Kafka's own defaults and the JVM
# options of Kafka's start scripts (kafka-server-start.sh: a 1 GiB heap; kafka-run-class.sh:
# G1, MaxGCPauseMillis=20, ...). 1 GiB is ample for one broker on a 2-core, 24 GiB machine
# and is not raised, so the RSS comparison does not favour Fjord. KAFKA_HEAP_OPTS overrides it;
# KAFKA_OPTS adds JVM options (for a profile: -XX:+UnlockDiagnosticVMOptions
# -XX:+DumpPerfMapAtExit, so `perf report` names the JIT-compiled methods).
# The only settings not at Kafka's defaults are the ones a single node needs (replication
# factor 1 for the internal topics, the KRaft quorum of one) and the initial rebalance
# delay set to 0 (as Fjord's benchmarks set theirs).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
libs="$here/kafka/target/libs"

# The jars match the pom they were resolved for: a changed pom (a new kafka.version)
# resolves them again.
resolve() {
    local want
    want=$(sha256sum "$here/kafka/pom.xml" | cut -d' ' -f1)
    if [ "$(cat "$libs/.resolved" 2>/dev/null)" != "$want" ]; then
        rm -rf "$libs"
        (cd "$here/kafka" && mvn -q -B dependency:copy-dependencies \
            -DoutputDirectory=target/libs -DincludeScope=runtime) >&2
        echo "$want" >"$libs/.resolved"
    fi
}

classpath() {
    resolve
    echo "$libs/*"
}

jvm_opts() {
    echo "${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G} -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20"
    echo "-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent"
    echo "-XX:MaxInlineLevel=15 -Djava.awt.headless=true"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
    local dir="" port="" settings=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir) dir=$2; shift 2 ;;
            --port) port=$2; shift 2 ;;
            --set) settings+=("$2"); shift 2 ;;
            *) echo "unknown flag $1" >&2; exit 2 ;;
        esac
    done
    [ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/kafka-peer.XXXXXX")
    [ -n "$port" ] || port=$(free_port)
    local controller_port
    controller_port=$(free_port)
    while [ "$controller_port" = "$port" ]; do controller_port=$(free_port); done
    mkdir -p "$dir/data"
    dir=$(cd "$dir" && pwd)
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    # --set values come last, so they win over the lines above.
    for setting in "${settings[@]}"; do
        echo "$setting" >>"$dir/server.properties"
    done
    cat >"$dir/log4j2.properties" <<EOF
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
EOF
    local cp
    cp=$(classpath)
    local log4j="-Dlog4j2.configurationFile=$dir/log4j2.properties"
    local cluster_id
    cluster_id=$(java -cp "$cp" "$log4j" kafka.tools.StorageTool random-uuid)
    java -cp "$cp" "$log4j" kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$dir/server.properties" >"$dir/format.out" 2>&1
    # shellcheck disable=SC2046
    nohup java $(jvm_opts) ${KAFKA_OPTS:-} "$log4j" -cp "$cp" kafka.Kafka "$dir/server.properties" \
        >"$dir/stdout.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/pid"
    local deadline=$((SECONDS + 60))
    until grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -gt $deadline ]; then
            echo "Kafka did not start; see $dir/server.log and $dir/stdout.log" >&2
            tail -n 20 "$dir/stdout.log" >&2 || true
            stop "$pid"
            exit 1
        fi
        sleep 0.2
    done
    echo "pid=$pid bootstrap=127.0.0.1:$port dir=$dir"
}

stop() {
    local pid
    case "${1:-}" in
        --dir) pid=$(cat "$2/pid") ;;
        "") echo "stop PID|--dir DIR" >&2; exit 2 ;;
        *) pid=$1 ;;
    esac
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
}

tool() {
    local class=$1
    shift
    case "$class" in
        *.*) ;;
        *) class="org.apache.kafka.tools.$class" ;;
    esac
    # The tools log through log4j2 too; warnings only, to stderr.
    local cp
    cp=$(classpath)
    exec java -Xmx1G -cp "$cp" -Dlog4j2.level=WARN "$class" "$@"
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    start) start "$@" ;;
    stop) stop "$@" ;;
    tool) tool "$@" ;;
    classpath) classpath ;;
    *) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
