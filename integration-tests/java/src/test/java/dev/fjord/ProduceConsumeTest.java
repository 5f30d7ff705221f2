package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.Future;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/** KafkaProducer with its defaults and KafkaConsumer in a classic group, every codec. */
class ProduceConsumeTest {
    static String bootstrap() {
        String b = System.getProperty("fjord.bootstrap");
        assertTrue(b != null && !b.isEmpty(), "run with -Dfjord.bootstrap=HOST:PORT");
        return b;
    }

    static KafkaProducer<String, String> producer(String codec) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        // Java 3.0+ defaults: enable.idempotence=true, acks=all. Left as they are.
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> consumer(String group) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return new KafkaConsumer<>(c);
    }

    @Test
    void everyCodecRoundTripsWithKeysAndHeadersThroughAGroup() throws Exception {
        for (String codec : new String[] {"none", "gzip", "snappy", "lz4", "zstd"}) {
            String topic = "java-" + codec + "-" + UUID.randomUUID();
            int n = 200;
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            try (KafkaProducer<String, String> producer = producer(codec)) {
                for (int i = 0; i < n; i++) {
                    ProducerRecord<String, String> r =
                            new ProducerRecord<>(topic, "k" + i, "value-" + i + "-" + codec);
                    r.headers().add("h", ("v" + i).getBytes(StandardCharsets.UTF_8));
                    sent.add(producer.send(r));
                }
                producer.flush();
                for (int i = 0; i < n; i++) {
                    // One partition (auto-created with num.partitions=1): offsets in order.
                    assertEquals(i, sent.get(i).get().offset(), codec);
                }
            }
            List<ConsumerRecord<String, String>> got = new ArrayList<>();
            try (KafkaConsumer<String, String> consumer = consumer("g-" + topic)) {
                consumer.subscribe(List.of(topic));
                long deadline = System.currentTimeMillis() + 30_000;
                while (got.size() < n && System.currentTimeMillis() < deadline) {
                    consumer.poll(Duration.ofMillis(500)).forEach(got::add);
                }
                consumer.commitSync();
            }
            assertEquals(n, got.size(), codec);
            for (int i = 0; i < n; i++) {
                ConsumerRecord<String, String> r = got.get(i);
                assertEquals(i, r.offset(), codec);
                assertEquals("k" + i, r.key(), codec);
                assertEquals("value-" + i + "-" + codec, r.value(), codec);
                assertArrayEquals(
                        ("v" + i).getBytes(StandardCharsets.UTF_8),
                        r.headers().lastHeader("h").value(),
                        codec);
            }
        }
    }
}
