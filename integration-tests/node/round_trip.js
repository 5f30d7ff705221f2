// KafkaJS (a pure-JavaScript client with its own protocol code) against a running fjord:
// admin (topics, metadata, offsets, offsets by time, configs, partitions, groups),
// produce with keys and headers to several partitions, uncompressed and gzip, and
// idempotently; a consumer group that reads everything and commits, the same group
// resuming from its commits, and the group's admin views.
//
// Usage: node round_trip.js HOST:PORT. Exits non-zero, with a message, on any mismatch.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const assert = require('node:assert/strict');
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

const kafka = new Kafka({
  clientId: 'fjord-kafkajs-check',
  brokers: [process.argv[2]],
  logLevel: logLevel.ERROR,
  retry: { retries: 5 },
});
const TOPIC = 'js';
const GROUP = 'js-group';

/** Reads with a fresh member of GROUP until `n` records came; key -> what came. */
async function consumeUntil(n) {
  const consumer = kafka.consumer({
    groupId: GROUP,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 100,
  });
  await consumer.connect();
  await consumer.subscribe({ topic: TOPIC, fromBeginning: true });
  const got = new Map();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`only ${got.size} of ${n} records in 15 s: ${[...got.keys()]}`)),
      15000,
    );
    consumer
      .run({
        eachMessage: async ({ partition, message }) => {
          const key = message.key.toString();
          if (got.has(key)) {
            // Thrown here, KafkaJS would catch it and retry the batch.
            clearTimeout(timer);
            reject(new Error(`record ${key} came twice`));
            return;
          }
          got.set(key, {
            partition,
            value: message.value.toString(),
            header: message.headers.h ? message.headers.h.toString() : undefined,
          });
          if (got.size >= n) {
            clearTimeout(timer);
            resolve();
          }
        },
      })
      .catch(reject);
  });
  // KafkaJS commits after each batch it hands out, and stopping waits for that before
  // the member leaves the group.
  await consumer.disconnect();
  return got;
}

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  assert.equal(
    await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 3 }], waitForLeaders: true }),
    true,
  );
  assert.ok((await admin.listTopics()).includes(TOPIC));
  const metadata = await admin.fetchTopicMetadata({ topics: [TOPIC] });
  assert.equal(metadata.topics[0].partitions.length, 3);

  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const expected = new Map();
  for (const compression of [CompressionTypes.None, CompressionTypes.GZIP]) {
    const messages = [];
    for (let i = 0; i < 150; i++) {
      const key = `k-${compression}-${i}`;
      const record = { partition: i % 3, value: `v${i}`, header: `${i}` };
      messages.push({ key, value: record.value, partition: record.partition, headers: { h: record.header } });
      expected.set(key, record);
    }
    const acks = await producer.send({ topic: TOPIC, compression, acks: -1, messages });
    assert.equal(acks.length, 3, JSON.stringify(acks));
    for (const ack of acks) {
      assert.equal(ack.errorCode, 0, JSON.stringify(ack));
    }
  }
  // An idempotent producer (InitProducerId, sequence numbers): 30 more, 10 a partition.
  const idempotent = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await idempotent.connect();
  await new Promise((resolve) => setTimeout(resolve, 5)); // a clock tick after the gzip batch
  const sent = Date.now();
  for (let i = 0; i < 30; i++) {
    const key = `k-idempotent-${i}`;
    const record = { partition: i % 3, value: `i${i}`, header: `${i}` };
    await idempotent.send({
      topic: TOPIC,
      acks: -1,
      messages: [{ key, value: record.value, partition: record.partition, headers: { h: record.header } }],
    });
    expected.set(key, record);
  }
  await idempotent.disconnect();
  const ends = await admin.fetchTopicOffsets(TOPIC);
  assert.deepEqual(
    ends.map((p) => [p.partition, p.low, p.high]).sort((a, b) => a[0] - b[0]),
    [[0, '0', '110'], [1, '0', '110'], [2, '0', '110']],
  );
  // ListOffsets by timestamp: the idempotent records are the first at or after `sent`.
  const byTime = await admin.fetchTopicOffsetsByTimestamp(TOPIC, sent);
  assert.deepEqual(
    byTime.map((p) => [p.partition, p.offset]).sort((a, b) => a[0] - b[0]),
    [[0, '100'], [1, '100'], [2, '100']],
  );

  // Configs: a topic override set with AlterConfigs, read back with DescribeConfigs.
  const TOPIC_RESOURCE = 2;
  await admin.alterConfigs({
    resources: [{ type: TOPIC_RESOURCE, name: TOPIC, configEntries: [{ name: 'retention.ms', value: '86400000' }] }],
  });
  const configs = await admin.describeConfigs({
    resources: [{ type: TOPIC_RESOURCE, name: TOPIC, configNames: ['retention.ms'] }],
  });
  assert.equal(configs.resources[0].errorCode, 0, JSON.stringify(configs));
  assert.equal(configs.resources[0].configEntries[0].configValue, '86400000');

  // The group reads every record once, in the partition it was sent to.
  const got = await consumeUntil(expected.size);
  assert.equal(got.size, expected.size);
  for (const [key, want] of expected) {
    assert.deepEqual(got.get(key), want, `record ${key}`);
  }
  const committed = await admin.fetchOffsets({ groupId: GROUP, topics: [TOPIC] });
  assert.deepEqual(
    committed[0].partitions.map((p) => [p.partition, p.offset]).sort((a, b) => a[0] - b[0]),
    [[0, '110'], [1, '110'], [2, '110']],
  );

  // A fourth partition (CreatePartitions); the group, run again, resumes from its
  // commits and finds the new partition from its start: only the two newer records.
  await admin.createPartitions({ topicPartitions: [{ topic: TOPIC, count: 4 }] });
  const grown = await admin.fetchTopicMetadata({ topics: [TOPIC] });
  assert.equal(grown.topics[0].partitions.length, 4);
  // A producer that learned the topic's partitions before they grew would drop a record
  // for partition 3 without an error (KafkaJS groups records by the partitions its
  // metadata knows): a new one sees all four.
  await producer.disconnect();
  const later = kafka.producer({ allowAutoTopicCreation: false });
  await later.connect();
  await later.send({
    topic: TOPIC,
    messages: [
      { key: 'late', value: 'after the commits', partition: 1, headers: { h: 'x' } },
      { key: 'new', value: 'in the new partition', partition: 3, headers: { h: 'y' } },
    ],
  });
  await later.disconnect();
  const grownEnds = await admin.fetchTopicOffsets(TOPIC);
  assert.deepEqual(
    grownEnds.map((p) => [p.partition, p.high]).sort((a, b) => a[0] - b[0]),
    [[0, '110'], [1, '111'], [2, '110'], [3, '1']],
  );
  const again = await consumeUntil(2);
  assert.deepEqual([...again.keys()].sort(), ['late', 'new']);
  assert.deepEqual(again.get('late'), { partition: 1, value: 'after the commits', header: 'x' });
  assert.deepEqual(again.get('new'), { partition: 3, value: 'in the new partition', header: 'y' });

  const { groups } = await admin.listGroups();
  assert.ok(groups.some((g) => g.groupId === GROUP), JSON.stringify(groups));
  const described = await admin.describeGroups([GROUP]);
  assert.equal(described.groups[0].state, 'Empty', JSON.stringify(described));
  await admin.deleteGroups([GROUP]);
  await admin.deleteTopics({ topics: [TOPIC] });
  assert.ok(!(await admin.listTopics()).includes(TOPIC));

  await admin.disconnect();
  console.log(`kafkajs round trip ok: ${expected.size + 2} records`);
}

// However KafkaJS retries, the whole check ends within two minutes.
setTimeout(() => {
  console.error('KafkaJS check: no result in 120 s');
  process.exit(1);
}, 120000).unref();

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
