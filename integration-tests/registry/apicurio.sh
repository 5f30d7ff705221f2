#!/usr/bin/env bash
# Apicurio Registry, the schema registry the integration tests run on Fjord, from Maven
# Central (the registry's own release site is not reachable here).
#
#   integration-tests/registry/apicurio.sh jar    resolve it on first use; print the path
#                                                 of its runner jar (`java -jar` starts it)
#
# Version 3.0.9 is the newest whose `kafkasql` storage (the registry's state kept in a
# Kafka topic, replayed on start) accepts a compacted journal topic: 3.1.3 and later
# refuse `cleanup.policy=compact`. Its Confluent-compatible API (/apis/ccompat/v7) is the
# one serializers and tools use. Karapace, the registry the issue names, is not on PyPI.
set -euo pipefail

version=3.0.9
here=$(cd "$(dirname "$0")" && pwd)
home="$here/target/apicurio-registry-$version"
jar="$home/apicurio-registry-app-$version-runner.jar"

resolve() {
    [ -f "$home/.resolved" ] && return
    rm -rf "$home"
    mkdir -p "$home"
    # The app is one tar.gz (runner jar, lib/); Maven's cache (~/.m2) keeps it offline later.
    mvn -q -B dependency:copy \
        -Dartifact="io.apicurio:apicurio-registry-app:$version:tar.gz:all" \
        -DoutputDirectory="$home" >&2
    tar -xzf "$home/apicurio-registry-app-$version-all.tar.gz" -C "$home"
    rm "$home/apicurio-registry-app-$version-all.tar.gz"
    [ -f "$jar" ] || { echo "no $jar in the Apicurio archive" >&2; exit 1; }
    touch "$home/.resolved"
}

case "${1:-}" in
    jar) resolve; echo "$jar" ;;
    *) echo "usage: $0 jar" >&2; exit 2 ;;
esac
