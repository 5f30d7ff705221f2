// KafkaJS's transactional producer against a running fjord: one transaction commits
// three records and a group offset, one aborts three records and another offset; a
// read_committed consumer (KafkaJS's default) sees only the committed three, a
// read_uncommitted one all six, and the group's committed offset is the committed one.
//
// Usage: node transactions.js HOST:PORT. Exits non-zero, with a message, on any mismatch.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const assert = require('node:assert/strict');
const { Kafka, logLevel } = require('kafkajs');

const kafka = new Kafka({
  clientId: 'fjord-kafkajs-txn',
  brokers: [process.argv[2]],
  logLevel: logLevel.ERROR,
  retry: { retries: 5 },
});
const TOPIC = 'js-txn';
const GROUP = 'js-txn-etl';

/** Every value a fresh group reads from the start within three seconds. */
async function readAll(group, readUncommitted) {
  const consumer = kafka.consumer({ groupId: group, readUncommitted, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic: TOPIC, fromBeginning: true });
  const got = [];
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      got.push(message.value.toString());
    },
  });
  await new Promise((resolve) => setTimeout(resolve, 3000));
  await consumer.disconnect();
  return got;
}

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 1 }] });
  const producer = kafka.producer({
    transactionalId: 'js-txn-writer',
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();

  const committed = await producer.transaction();
  await committed.send({ topic: TOPIC, messages: ['c0', 'c1', 'c2'].map((value) => ({ value })) });
  await committed.sendOffsets({
    consumerGroupId: GROUP,
    topics: [{ topic: TOPIC, partitions: [{ partition: 0, offset: '3' }] }],
  });
  await committed.commit();

  const aborted = await producer.transaction();
  await aborted.send({ topic: TOPIC, messages: ['a0', 'a1', 'a2'].map((value) => ({ value })) });
  await aborted.sendOffsets({
    consumerGroupId: GROUP,
    topics: [{ topic: TOPIC, partitions: [{ partition: 0, offset: '7' }] }],
  });
  await aborted.abort();
  await producer.disconnect();

  assert.deepEqual(await readAll('js-txn-committed', false), ['c0', 'c1', 'c2']);
  assert.deepEqual(
    await readAll('js-txn-uncommitted', true),
    ['c0', 'c1', 'c2', 'a0', 'a1', 'a2'],
  );
  const offsets = await admin.fetchOffsets({ groupId: GROUP, topics: [TOPIC] });
  assert.equal(offsets[0].partitions[0].offset, '3', JSON.stringify(offsets));
  await admin.disconnect();
  console.log('kafkajs transactions ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
