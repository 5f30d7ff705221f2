#!/usr/bin/env python3
"""Formats docs/kafka-compatibility.md from two kafka-broker-api-versions outputs.

  scripts/kafka_compatibility.py KAFKA_VERSION kafka.txt fjord.txt > docs/kafka-compatibility.md

Each input is what BrokerApiVersionsCommand printed for one broker: lines such as
`Produce(0): 0 to 13 [usable: 13],`, `OffsetDelete(47): 0 [usable: 0],` or
`PushTelemetry(72): UNSUPPORTED,`. The version columns come only from those answers; the
notes below are the one hand-written part (what is planned where, what a client sees).
"""
import re
import sys

LINE = re.compile(r"^\s*(\w+)\((\d+)\):\s*(UNSUPPORTED|(\d+)(?: to (\d+))?)")

ISSUE_19 = "planned: issue 19 (transactions)"
ISSUE_20 = "planned: issue 20 (security)"
ISSUE_21 = "planned: issue 21 (replication, the Raft quorum)"
NOT_PLANNED_SHARE = "not planned: share groups (KIP-932)"
NOT_PLANNED_STREAMS = "not planned: the streams group protocol (KIP-1071); Kafka Streams uses the classic protocol"
NOTES = {
    0: "record batches v2 only; v13 names topics by ID (UNKNOWN_TOPIC_ID for a stale one)",
    1: "v13+ name topics by ID (UNKNOWN_TOPIC_ID for a deleted or re-created topic's old ID); read_committed stops at the last stable offset and lists aborted transactions from the .txnindex, still zero-copy",
    2: "read_committed: latest is the last stable offset; no tiered storage: earliest-local (v8) is the log start, latest-tiered (v9) is -1, as Kafka answers with remote storage off; v11 is not in kafka-protocol 0.18",
    3: "v12+ also by topic ID (UNKNOWN_TOPIC_ID for an unknown one)",
    8: "v9 checks KIP-848 member epochs; v10 (topics by ID) is not in kafka-protocol 0.18",
    9: "require_stable (v7+): UNSTABLE_OFFSET_COMMIT while a transaction holds the partition's offset; v10 (topics by ID) is not in kafka-protocol 0.18",
    15: "v6: GROUP_ID_NOT_FOUND for unknown and KIP-848 groups (ConsumerGroupDescribe shows those)",
    16: "v5 reports the group type (classic, consumer) and filters by it",
    18: "v5 is not in kafka-protocol 0.18",
    35: "v5 is not in kafka-protocol 0.18",
    42: "v3 is not in kafka-protocol 0.18",
    17: ISSUE_20,
    21: "one replica: the high watermark is the log end offset; `fjord topics delete-records` from the command line",
    22: "idempotent and transactional producers (epoch bump fences the id's older producer; an open transaction is aborted first, CONCURRENT_TRANSACTIONS to retry)",
    23: "end offsets per leader epoch from each partition's leader-epoch-checkpoint; a restart after writes starts a new epoch",
    24: "v0-3 from clients; v4-5 batches with verify-only (KIP-890); transactional Produce is verified against the coordinator",
    25: "the group's offsets join the transaction as Kafka's __consumer_offsets partition",
    26: "markers written before the answer; v5 (transaction version 2) not served yet",
    27: "served for administrators (kafka-transactions.sh abort, KIP-664; the coordinator writes its own markers in-process); v2 (transaction version 2) is not in kafka-protocol",
    28: "offsets durable at once, visible at COMMIT, dropped at ABORT; v3+ fenced by generation and member (KIP-447); v5 (transaction version 2) not served yet",
    29: ISSUE_20, 30: ISSUE_20, 31: ISSUE_20,
    34: "one log dir per broker: " + ISSUE_21,
    36: ISSUE_20,
    38: "not planned: delegation tokens", 39: "not planned: delegation tokens",
    40: "not planned: delegation tokens", 41: "not planned: delegation tokens",
    43: ISSUE_21, 45: ISSUE_21, 46: ISSUE_21,
    48: ISSUE_20, 49: ISSUE_20, 50: ISSUE_20, 51: ISSUE_20,
    55: ISSUE_21, 57: "not planned yet: feature levels",
    61: "idempotent and transactional producers with their open transaction's first offset; coordinator epoch -1",
    64: ISSUE_21,
    65: "state, timeout, start time, producer and partitions from the coordinator",
    66: "state and producer id filters; v1 duration (KIP-994), v2 id regular expression (RE2 syntax)",
    68: "KIP-848 groups: uniform and range assignors, incremental reconciliation, static members, regex subscriptions, online migration from and to classic groups; group state kept as Kafka's __consumer_offsets records",
    69: "KIP-848 groups",
    71: "Kafka too answers UNSUPPORTED without a client-metrics plugin",
    72: "Kafka too answers UNSUPPORTED without a client-metrics plugin",
    74: "not planned yet",
    75: "paged (`response_partition_limit` capped at 2,000, the cursor); what the Java AdminClient's describeTopics uses",
    80: ISSUE_21, 81: ISSUE_21, 94: ISSUE_21,
    76: NOT_PLANNED_SHARE, 77: NOT_PLANNED_SHARE, 78: NOT_PLANNED_SHARE, 79: NOT_PLANNED_SHARE,
    83: NOT_PLANNED_SHARE, 84: NOT_PLANNED_SHARE, 85: NOT_PLANNED_SHARE, 86: NOT_PLANNED_SHARE,
    87: NOT_PLANNED_SHARE, 90: NOT_PLANNED_SHARE, 91: NOT_PLANNED_SHARE, 92: NOT_PLANNED_SHARE,
    88: NOT_PLANNED_STREAMS, 89: NOT_PLANNED_STREAMS, 93: NOT_PLANNED_STREAMS,
}


def parse(path):
    """{key: (name, "min-max" or None)} from one tool output."""
    out = {}
    for line in open(path):
        m = LINE.match(line)
        if not m:
            continue
        name, key = m.group(1), int(m.group(2))
        if m.group(3) == "UNSUPPORTED":
            out[key] = (name, None)
        else:
            low = m.group(4)
            high = m.group(5) or low
            out[key] = (name, f"{low}-{high}")
    if not out:
        sys.exit(f"{path}: no ApiVersions lines")
    return out


def main(version, kafka_path, fjord_path):
    kafka, fjord = parse(kafka_path), parse(fjord_path)
    print("# Kafka protocol compatibility")
    print()
    print("<!-- Generated by scripts/kafka-compatibility from both brokers' ApiVersions answers;")
    print("     do not edit the table by hand (the notes live in scripts/kafka_compatibility.py). -->")
    print()
    print(f"Every API key Apache Kafka's Java client knows, with the versions Apache Kafka {version}")
    print("(single-node KRaft, `bench/peers/kafka.sh`) and Fjord advertise in ApiVersions, as")
    print("Kafka's `kafka-broker-api-versions` tool reads them. A client picks the highest version")
    print("both sides know; an API a broker does not advertise is refused by the Java client")
    print("before it sends anything (`UnsupportedVersionException`), and other clients fail the")
    print("same way. `scripts/kafka-compatibility` regenerates this file; a broker unit test")
    print("checks that the Fjord column still matches what Fjord advertises.")
    print()
    served = sum(1 for k in fjord if fjord[k][1])
    print(f"Fjord serves {served} of the {sum(1 for k in kafka if kafka[k][1])} APIs Apache Kafka {version} serves.")
    print()
    print(f"| key | API | Apache Kafka {version} | Fjord | notes |")
    print("|---:|---|---|---|---|")
    for key in sorted(set(kafka) | set(fjord)):
        name = (kafka.get(key) or fjord.get(key))[0]
        k = (kafka.get(key) or (name, None))[1] or "-"
        f = (fjord.get(key) or (name, None))[1] or "-"
        print(f"| {key} | {name} | {k} | {f} | {NOTES.get(key, '')} |")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
