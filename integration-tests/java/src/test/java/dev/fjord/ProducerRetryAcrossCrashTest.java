package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.junit.jupiter.api.Test;

/**
 * Retries for real: integration-tests/tests/java_client.rs runs this class on its own,
 * kills the broker with SIGKILL once the marker file appears (half the records are
 * sent), writes the marker's ".killed" twin, and restarts it on the same port and data.
 * The producer waits for the twin before sending the second half, so the crash always
 * falls inside the run. The idempotent producer, five
 * requests in flight, reconnects and resends what was not acknowledged; the broker
 * must keep each record once, in order (acks=all is answered from disk, and the
 * producer's sequence state is recovered from the log).
 */
class ProducerRetryAcrossCrashTest {
    @Test
    void fiveInFlightAcrossABrokerCrashKeepsEveryRecordOnceAndInOrder() throws Exception {
        String marker = System.getProperty("fjord.crash.marker");
        assertTrue(marker != null && !marker.isEmpty(), "run with -Dfjord.crash.marker=FILE");
        String topic = "retry-across-crash";
        try (Admin admin = AdminTest.admin()) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
        }
        Properties p = new Properties();
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, "1024");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        p.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        int n = 20_000;
        // A consumer reads along the whole time. After the restart the broker leads in a
        // new leader epoch: the consumer's fetches in the old one are fenced, and it
        // validates its position (OffsetForLeaderEpoch, with the epoch stamped in the
        // last batch it read) before it goes on, losing and repeating nothing.
        TopicPartition tp = new TopicPartition(topic, 0);
        CompletableFuture<List<ConsumerRecord<byte[], byte[]>>> readAlong =
            CompletableFuture.supplyAsync(() -> readAcrossTheCrash(tp, n));
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = ProducerTest.producer(p)) {
            for (int i = 0; i < n; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, 0, null, ("r" + i).getBytes())));
                if (i == n / 2) {
                    Files.writeString(Path.of(marker), "half sent");
                    awaitFile(Path.of(marker + ".killed"));
                }
                if (i % 100 == 0) {
                    Thread.sleep(2); // spread the sends over the crash
                }
            }
            producer.flush();
        }
        for (int i = 0; i < n; i++) {
            assertEquals(i, sent.get(i).get().offset(), "record " + i);
        }
        List<ConsumerRecord<byte[], byte[]>> got = ProducerTest.readAll(tp, n);
        assertEquals(n, got.size());
        for (int i = 0; i < n; i++) {
            assertEquals("r" + i, new String(got.get(i).value()), "offset " + i);
        }
        List<ConsumerRecord<byte[], byte[]>> along = readAlong.get(150, TimeUnit.SECONDS);
        assertEquals(n, along.size(), "the consumer reading along the crash");
        for (int i = 0; i < n; i++) {
            assertEquals(i, along.get(i).offset());
            assertEquals("r" + i, new String(along.get(i).value()), "offset " + i);
        }
        // Records written before the crash carry epoch 0, those after it epoch 1.
        assertEquals(Optional.of(0), along.get(0).leaderEpoch());
        assertEquals(Optional.of(1), along.get(n - 1).leaderEpoch());
    }

    /** Polls `tp` from the start until `n` records came, across the broker's crash. */
    static List<ConsumerRecord<byte[], byte[]>> readAcrossTheCrash(TopicPartition tp, int n) {
        Properties c = new Properties();
        c.put("bootstrap.servers", ProduceConsumeTest.bootstrap());
        c.put("key.deserializer", ByteArrayDeserializer.class.getName());
        c.put("value.deserializer", ByteArrayDeserializer.class.getName());
        c.put("reconnect.backoff.max.ms", "200");
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c)) {
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            long deadline = System.currentTimeMillis() + 140_000;
            while (got.size() < n && System.currentTimeMillis() < deadline) {
                consumer.poll(Duration.ofMillis(200)).forEach(got::add);
            }
        }
        return got;
    }

    static void awaitFile(Path file) throws InterruptedException {
        long deadline = System.currentTimeMillis() + 60_000;
        while (!Files.exists(file)) {
            assertTrue(System.currentTimeMillis() < deadline, file + " never appeared");
            Thread.sleep(5);
        }
    }
}
