package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.Test;

/**
 * A KIP-848 group across a broker crash: integration-tests/tests/java_client.rs runs this
 * class on its own, kills the broker with SIGKILL once the marker file appears (the
 * member owns its partitions and read the first records), and restarts it on the same
 * port and data. The group's state comes back from its records, so the member goes on
 * heartbeating in its group (the Java client treats GROUP_ID_NOT_FOUND as fatal), keeps
 * its partitions and reads what is produced after the restart, nothing twice.
 */
class ConsumerProtocolAcrossCrashTest {
    @Test
    void aConsumerGroupMemberCarriesOnAcrossABrokerCrash() throws Exception {
        String marker = System.getProperty("fjord.crash.marker");
        assertTrue(marker != null && !marker.isEmpty(), "run with -Dfjord.crash.marker=FILE");
        String topic = "kip848-crash";
        try (Admin admin = AdminTest.admin()) {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get();
        }
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, ProduceConsumeTest.bootstrap());
        c.put(ConsumerConfig.GROUP_ID_CONFIG, "kip848-crash-group");
        c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        Set<String> seen = new HashSet<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.subscribe(List.of(topic));
            produce(topic, 0, 10);
            readUntil(consumer, seen, 10);
            consumer.commitSync();
            Set<TopicPartition> before = consumer.assignment();
            assertEquals(2, before.size());
            Files.writeString(Path.of(marker), "owned and read");
            ProducerRetryAcrossCrashTest.awaitFile(Path.of(marker + ".killed"));
            // The broker restarts meanwhile; records written after it must arrive.
            produce(topic, 10, 20);
            readUntil(consumer, seen, 20);
            consumer.commitSync();
            assertEquals(before, consumer.assignment(), "the member kept its partitions");
        }
        assertEquals(20, seen.size());
    }

    static void produce(String topic, int from, int to) throws Exception {
        try (KafkaProducer<String, String> p = ProduceConsumeTest.producer("none")) {
            for (int i = from; i < to; i++) {
                p.send(new ProducerRecord<>(topic, i % 2, "k", "r" + i)).get();
            }
        }
    }

    static void readUntil(KafkaConsumer<String, String> consumer, Set<String> seen, int n) {
        long deadline = System.currentTimeMillis() + 120_000;
        while (seen.size() < n) {
            assertTrue(System.currentTimeMillis() < deadline, "only " + seen.size() + " of " + n);
            consumer.poll(Duration.ofMillis(200)).forEach(r ->
                assertTrue(seen.add(r.value()), r.value() + " read twice"));
        }
    }
}
