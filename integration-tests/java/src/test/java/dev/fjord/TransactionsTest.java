package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.admin.AbortTransactionSpec;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.junit.jupiter.api.Test;

/**
 * The Java client's transactional producer on Fjord: committed records and offsets
 * appear together, aborted ones never reach a read_committed consumer (while
 * read_uncommitted sees them), and a second producer with the same transactional.id
 * fences the first with ProducerFencedException. Admin.describeProducers finds an open
 * transaction's start offset and Admin.abortTransaction (KIP-664, WriteTxnMarkers to
 * the leader) aborts it, which unpins read_committed consumers.
 */
class TransactionsTest {
    static KafkaProducer<byte[], byte[]> transactional(String id) {
        Properties p = new Properties();
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "1");
        return ProducerTest.producer(p);
    }

    static KafkaConsumer<byte[], byte[]> consumer(String group, String isolation) {
        Properties c = new Properties();
        c.put("bootstrap.servers", ProduceConsumeTest.bootstrap());
        c.put("group.id", group);
        c.put("isolation.level", isolation);
        c.put("enable.auto.commit", "false");
        c.put("auto.offset.reset", "earliest");
        c.put("key.deserializer", ByteArrayDeserializer.class.getName());
        c.put("value.deserializer", ByteArrayDeserializer.class.getName());
        return new KafkaConsumer<>(c);
    }

    static ProducerRecord<byte[], byte[]> record(String topic, String value) {
        return new ProducerRecord<>(topic, 0, null, value.getBytes(StandardCharsets.UTF_8));
    }

    /** The values of `tp` from the start, read for two seconds. */
    static List<String> values(TopicPartition tp, String isolation) {
        List<String> got = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = consumer("txn-reader", isolation)) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long deadline = System.currentTimeMillis() + 2_000;
            while (System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    got.add(new String(r.value(), StandardCharsets.UTF_8));
                }
            }
        }
        return got;
    }

    @Test
    void commitAbortOffsetsAndFencing() throws Exception {
        String in = ProducerTest.topic(1);
        String out = ProducerTest.topic(1);
        TopicPartition inTp = new TopicPartition(in, 0);
        TopicPartition outTp = new TopicPartition(out, 0);
        try (KafkaProducer<byte[], byte[]> plain = ProducerTest.producer(new Properties())) {
            for (int i = 0; i < 6; i++) {
                plain.send(record(in, "r" + i)).get();
            }
        }
        String group = "txn-etl-" + in;
        String id = "txn-java-" + in;
        KafkaProducer<byte[], byte[]> first = transactional(id);
        try (KafkaConsumer<byte[], byte[]> input = consumer(group, "read_committed")) {
            input.assign(List.of(inTp));
            List<ConsumerRecord<byte[], byte[]>> read = new ArrayList<>();
            long deadline = System.currentTimeMillis() + 30_000;
            while (read.size() < 6 && System.currentTimeMillis() < deadline) {
                input.poll(Duration.ofMillis(200)).forEach(read::add);
            }
            assertEquals(6, read.size());
            first.initTransactions();
            // Committed: the first three, transformed, with offset 3.
            first.beginTransaction();
            for (ConsumerRecord<byte[], byte[]> r : read.subList(0, 3)) {
                first.send(record(out, new String(r.value(), StandardCharsets.UTF_8).toUpperCase()));
            }
            first.sendOffsetsToTransaction(
                    Map.of(inTp, new OffsetAndMetadata(3)), input.groupMetadata());
            first.commitTransaction();
            // Aborted: the next three, written (flushed) and offset 6.
            first.beginTransaction();
            for (ConsumerRecord<byte[], byte[]> r : read.subList(3, 6)) {
                first.send(record(out, "aborted-" + new String(r.value(), StandardCharsets.UTF_8)));
            }
            first.flush();
            first.sendOffsetsToTransaction(
                    Map.of(inTp, new OffsetAndMetadata(6)), input.groupMetadata());
            first.abortTransaction();
            assertEquals(3L, input.committed(java.util.Set.of(inTp)).get(inTp).offset());
        }
        assertEquals(List.of("R0", "R1", "R2"), values(outTp, "read_committed"));
        assertEquals(
                List.of("R0", "R1", "R2", "aborted-r3", "aborted-r4", "aborted-r5"),
                values(outTp, "read_uncommitted"));

        // A newer producer with the same id fences the first.
        try (KafkaProducer<byte[], byte[]> second = transactional(id)) {
            second.initTransactions();
            first.beginTransaction();
            Exception fenced = assertThrows(Exception.class, () -> {
                first.send(record(out, "zombie")).get();
                first.commitTransaction();
            });
            Throwable cause = fenced;
            while (cause != null && !(cause instanceof ProducerFencedException)) {
                cause = cause.getCause();
            }
            assertEquals(ProducerFencedException.class, cause == null ? null : cause.getClass(),
                    "fenced: " + fenced);
            first.close(Duration.ZERO);
            second.beginTransaction();
            second.send(record(out, "second"));
            second.commitTransaction();
        }
        assertEquals(List.of("R0", "R1", "R2", "second"), values(outTp, "read_committed"));
    }

    @Test
    void adminAbortsAnOpenTransaction() throws Exception {
        String topic = ProducerTest.topic(1);
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaProducer<byte[], byte[]> open = transactional("txn-hang-" + topic);
                KafkaProducer<byte[], byte[]> plain = ProducerTest.producer(new Properties());
                Admin admin = AdminTest.admin()) {
            plain.send(record(topic, "before")).get();
            open.initTransactions();
            open.beginTransaction();
            open.send(record(topic, "stuck")).get();
            plain.send(record(topic, "after")).get();
            assertEquals(List.of("before"), values(tp, "read_committed"));

            List<ProducerState> states = admin.describeProducers(List.of(tp))
                    .partitionResult(tp).get().activeProducers();
            ProducerState hanging = states.stream()
                    .filter(st -> st.currentTransactionStartOffset().isPresent())
                    .findFirst().orElseThrow();
            assertEquals(1L, hanging.currentTransactionStartOffset().getAsLong());
            admin.abortTransaction(new AbortTransactionSpec(tp, hanging.producerId(),
                    (short) hanging.producerEpoch(), hanging.coordinatorEpoch().orElse(0)))
                    .all().get();
            assertEquals(List.of("before", "after"), values(tp, "read_committed"));
            assertEquals(List.of("before", "stuck", "after"), values(tp, "read_uncommitted"));
            open.abortTransaction();
        }
    }
}
