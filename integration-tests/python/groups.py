"""kafka-python consumer groups against a running fjord: subscribe, commit, resume,
two members splitting partitions, and the admin views of groups.

Usage: groups.py HOST:PORT. Exits non-zero (with a message) on any mismatch.
"""
import sys
import threading
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

bootstrap = sys.argv[1]
admin = KafkaAdminClient(bootstrap_servers=bootstrap)
admin.create_topics([NewTopic("pyg", 4, 1)])
producer = KafkaProducer(bootstrap_servers=bootstrap)
for i in range(60):
    producer.send("pyg", value=b"v%d" % i, partition=i % 4)
producer.flush()


def consumer():
    return KafkaConsumer(
        "pyg",
        bootstrap_servers=bootstrap,
        group_id="pyg-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )


def read(c, count, seconds=30):
    got = []
    deadline = time.time() + seconds
    while len(got) < count:
        assert time.time() < deadline, "read %d of %d" % (len(got), count)
        for records in c.poll(timeout_ms=200, max_records=count - len(got)).values():
            got.extend((r.partition, r.offset) for r in records)
    return got


first = consumer()
got_first = read(first, 30)
first.commit()
first.close()

second = consumer()
got_second = read(second, 30)
extra = second.poll(timeout_ms=1000)
assert not extra, "records read twice: %s" % extra
both = sorted(got_first + got_second)
assert both == sorted((p, o) for p in range(4) for o in range(15)), both
second.commit()

# Two members share the partitions, each polled by its own thread (a member blocks in
# JoinGroup until the others rejoin, as with any Kafka broker).
other = consumer()
stop = threading.Event()


def run(c):
    while not stop.is_set():
        c.poll(timeout_ms=100)


threads = [threading.Thread(target=run, args=(c,)) for c in (second, other)]
for t in threads:
    t.start()
deadline = time.time() + 30
while len(second.assignment()) != 2 or len(other.assignment()) != 2:
    assert time.time() < deadline, (second.assignment(), other.assignment())
    time.sleep(0.1)
stop.set()
for t in threads:
    t.join()
assert second.assignment() | other.assignment() == {TopicPartition("pyg", p) for p in range(4)}

listed = admin.list_groups()
print("list_groups:", listed)
assert "pyg-group" in str(listed), listed
described = admin.describe_groups(["pyg-group"])
print("describe_groups:", described)
assert "Stable" in str(described), described
offsets = admin.list_group_offsets({"pyg-group": None})
print("list_group_offsets:", offsets)
offsets = offsets.get("pyg-group", offsets)
assert all(offsets[TopicPartition("pyg", p)].offset == 15 for p in range(4)), offsets
second.close()
other.close()
deleted = admin.delete_groups(["pyg-group"])
print("delete_groups:", deleted)
assert "pyg-group" not in str(admin.list_groups()), admin.list_groups()
print("kafka-python groups ok")
