"""kafka-python's admin client against a running fjord: incremental and legacy config
changes, describe_configs, a broker default, a refused config, and describe_log_dirs.

Usage: configs.py HOST:PORT. Exits non-zero (with a message) on any mismatch.
"""
import sys

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

bootstrap = sys.argv[1]
admin = KafkaAdminClient(bootstrap_servers=bootstrap)
admin.create_topics([NewTopic("pyc", 2, 1)])
producer = KafkaProducer(bootstrap_servers=bootstrap)
for i in range(10):
    producer.send("pyc", value=b"x" * 100, partition=0)
producer.flush()


def topic(configs):
    return ConfigResource(ConfigResourceType.TOPIC, "pyc", configs=configs)


def described():
    got = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "pyc")])
    return got["topic"]["pyc"]


# IncrementalAlterConfigs (kafka-python's choice when the broker offers it).
result = admin.alter_configs([topic({"retention.ms": "120000"})])
assert result == {"topic": {"pyc": "OK"}}, result
# AlterConfigs (kafka-python fills in the other dynamic keys, since it replaces all).
result = admin.alter_configs([topic({"retention.bytes": "999999"})], incremental=False)
assert result == {"topic": {"pyc": "OK"}}, result
configs = described()
for name, value in [("retention.ms", "120000"), ("retention.bytes", "999999")]:
    entry = configs[name]
    assert entry["value"] == value, (name, entry)
    assert entry["config_source"] == "DYNAMIC_TOPIC_CONFIG", (name, entry)

# A broker default, changed at runtime.
broker = ConfigResource(ConfigResourceType.BROKER, "1", configs={"log.segment.bytes": "2097152"})
result = admin.alter_configs([broker])
assert result == {"broker": {"1": "OK"}}, result
got = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")])["broker"]["1"]
assert got["log.segment.bytes"]["value"] == "2097152", got["log.segment.bytes"]

# A cleanup policy Kafka does not have is refused with INVALID_CONFIG (40), and nothing
# changes.
result = admin.alter_configs([topic({"cleanup.policy": "shred"})])
assert "Error 40" in result["topic"]["pyc"], result
assert described()["retention.ms"]["value"] == "120000"

# Booleans: any case of true/false is taken; a typo is refused (INVALID_CONFIG), not
# read as false (which once turned durability off silently).
durable = ConfigResource(ConfigResourceType.BROKER, "1", configs={"fjord.fsync.on.ack": "yes"})
result = admin.alter_configs([durable])
assert "Error 40" in result["broker"]["1"], result
got = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")])["broker"]["1"]
# kafka-python leaves out configs at their defaults: still the default (true).
assert "fjord.fsync.on.ack" not in got, got["fjord.fsync.on.ack"]
result = admin.alter_configs([topic({"fjord.fsync.on.ack": "FALSE"})])
assert result == {"topic": {"pyc": "OK"}}, result
assert described()["fjord.fsync.on.ack"]["value"] == "FALSE"
result = admin.alter_configs([topic({"fjord.fsync.on.ack": "1"})])
assert "Error 40" in result["topic"]["pyc"], result
assert described()["fjord.fsync.on.ack"]["value"] == "FALSE"

# Bytes on disk per partition.
dirs = admin.describe_log_dirs(["pyc"])
assert len(dirs) == 1 and dirs[0]["broker"] == 1, dirs
log_dir = dirs[0]["log_dirs"][0]
assert log_dir["error_code"] == 0, log_dir
sizes = {p["partition_index"]: p["partition_size"] for t in log_dir["topics"] for p in t["partitions"]}
assert sizes[1] == 0 and sizes[0] > 1000, sizes
assert log_dir["total_bytes"] >= log_dir["usable_bytes"] > 0, log_dir
print("kafka-python configs ok")
