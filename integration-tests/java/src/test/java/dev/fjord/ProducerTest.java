package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.junit.jupiter.api.Test;

/** KafkaProducer beyond its defaults: five requests in flight, large records, too-large ones. */
class ProducerTest {
    static KafkaProducer<byte[], byte[]> producer(Properties extra) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, ProduceConsumeTest.bootstrap());
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.putAll(extra);
        return new KafkaProducer<>(p);
    }

    static String topic(int partitions) throws Exception {
        String topic = "producer-" + UUID.randomUUID();
        try (Admin admin = AdminTest.admin()) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        }
        return topic;
    }

    /** Every record of partition `tp` from offset 0, until `n` have arrived. */
    static List<ConsumerRecord<byte[], byte[]>> readAll(TopicPartition tp, int n) {
        Properties c = new Properties();
        c.put("bootstrap.servers", ProduceConsumeTest.bootstrap());
        c.put("key.deserializer", ByteArrayDeserializer.class.getName());
        c.put("value.deserializer", ByteArrayDeserializer.class.getName());
        c.put("max.partition.fetch.bytes", "4194304");
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c)) {
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            long deadline = System.currentTimeMillis() + 30_000;
            while (got.size() < n && System.currentTimeMillis() < deadline) {
                consumer.poll(Duration.ofMillis(300)).forEach(got::add);
            }
        }
        return got;
    }

    @Test
    void fiveInFlightWithRetriesKeepsOrderAndWritesEachRecordOnce() throws Exception {
        String topic = topic(1);
        Properties p = new Properties();
        // Idempotence (the default) with the most in-flight requests it allows, retries
        // unbounded (the default), and small batches so that many requests overlap.
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, "512");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        int n = 5000;
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = producer(p)) {
            for (int i = 0; i < n; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, 0, null, ("r" + i).getBytes())));
            }
            producer.flush();
        }
        for (int i = 0; i < n; i++) {
            assertEquals(i, sent.get(i).get().offset());
        }
        List<ConsumerRecord<byte[], byte[]>> got = readAll(new TopicPartition(topic, 0), n);
        assertEquals(n, got.size());
        for (int i = 0; i < n; i++) {
            assertEquals("r" + i, new String(got.get(i).value()));
        }
    }

    @Test
    void recordsUpToTheBrokerLimitRoundTripAndLargerOnesAreRefusedByTheBroker() throws Exception {
        String topic = topic(1);
        Properties p = new Properties();
        // A client limit above the broker's, so the broker's answer is what is checked.
        p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, "8388608");
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none");
        byte[] large = new byte[1_000_000];
        Arrays.fill(large, (byte) 'x');
        large[0] = 'a';
        large[large.length - 1] = 'z';
        try (KafkaProducer<byte[], byte[]> producer = producer(p)) {
            for (int i = 0; i < 3; i++) {
                assertEquals(i, producer.send(new ProducerRecord<>(topic, 0, null, large)).get().offset());
            }
            // Over message.max.bytes (Kafka's default, 1048588): MESSAGE_TOO_LARGE, which
            // the Java client raises as RecordTooLargeException.
            byte[] tooLarge = new byte[2_000_000];
            ExecutionException refused = assertThrows(ExecutionException.class,
                    () -> producer.send(new ProducerRecord<>(topic, 0, null, tooLarge)).get());
            assertInstanceOf(RecordTooLargeException.class, refused.getCause());
        }
        List<ConsumerRecord<byte[], byte[]>> got = readAll(new TopicPartition(topic, 0), 3);
        assertEquals(3, got.size());
        for (ConsumerRecord<byte[], byte[]> r : got) {
            assertTrue(Arrays.equals(large, r.value()));
        }
    }
}
