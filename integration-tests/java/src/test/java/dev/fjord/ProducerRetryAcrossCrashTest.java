package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
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
        List<ConsumerRecord<byte[], byte[]>> got = ProducerTest.readAll(new TopicPartition(topic, 0), n);
        assertEquals(n, got.size());
        for (int i = 0; i < n; i++) {
            assertEquals("r" + i, new String(got.get(i).value()), "offset " + i);
        }
    }

    static void awaitFile(Path file) throws InterruptedException {
        long deadline = System.currentTimeMillis() + 60_000;
        while (!Files.exists(file)) {
            assertTrue(System.currentTimeMillis() < deadline, file + " never appeared");
            Thread.sleep(5);
        }
    }
}
