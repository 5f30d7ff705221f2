"""kafka-python against a running fjord: admin, every codec, keys, headers, consume.

Usage: round_trip.py HOST:PORT. Exits non-zero (with a message) on any mismatch.
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

bootstrap = sys.argv[1]
KafkaAdminClient(bootstrap_servers=bootstrap).create_topics([NewTopic("py", 1, 1)])
expected = []
for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, acks="all")
    futures = []
    for i in range(100):
        key, value = b"k-%s-%d" % (str(codec).encode(), i), b"v%d" % i
        futures.append(producer.send("py", key=key, value=value, headers=[("h", b"%d" % i)]))
        expected.append((key, value, [("h", b"%d" % i)]))
    producer.flush()
    offsets = [f.get(timeout=10).offset for f in futures]
    assert offsets == list(range(offsets[0], offsets[0] + 100)), (codec, offsets[:5])

consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=5000)
tp = TopicPartition("py", 0)
consumer.assign([tp])
consumer.seek_to_beginning(tp)
got = [(m.key, m.value, list(m.headers)) for m in consumer]
assert got == expected, "consumed %d of %d; first difference at %s" % (
    len(got), len(expected), next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None))
assert consumer.end_offsets([tp])[tp] == len(expected)
print("kafka-python round trip ok: %d records" % len(got))
