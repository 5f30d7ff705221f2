"""kafka-python's transactional producer against a running fjord: a transaction that
commits three records and a group offset, one that aborts three more and another
offset; read_committed sees the committed three, read_uncommitted all six, and the
group's committed offset is the committed one.

Usage: transactions.py HOST:PORT. Exits non-zero (with a message) on any mismatch.
"""
import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

bootstrap = sys.argv[1]
admin = KafkaAdminClient(bootstrap_servers=bootstrap)
admin.create_topics([NewTopic("py-txn", 1, 1)])
tp = TopicPartition("py-txn", 0)
producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="py-txn-writer")
producer.init_transactions()

producer.begin_transaction()
for v in (b"c0", b"c1", b"c2"):
    producer.send("py-txn", value=v, partition=0)
producer.send_offsets_to_transaction({tp: OffsetAndMetadata(3, "", -1)}, "py-txn-etl")
producer.commit_transaction()

producer.begin_transaction()
for v in (b"a0", b"a1", b"a2"):
    producer.send("py-txn", value=v, partition=0)
producer.flush()
producer.send_offsets_to_transaction({tp: OffsetAndMetadata(7, "", -1)}, "py-txn-etl")
producer.abort_transaction()
producer.close()


def read_all(isolation):
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = [m.value for m in c]
    c.close()
    return got


committed = read_all("read_committed")
assert committed == [b"c0", b"c1", b"c2"], committed
everything = read_all("read_uncommitted")
assert everything == [b"c0", b"c1", b"c2", b"a0", b"a1", b"a2"], everything
offsets = admin.list_group_offsets({"py-txn-etl": None})
offsets = offsets.get("py-txn-etl", offsets)
assert offsets[tp].offset == 3, offsets
print("kafka-python transactions ok")
