package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.junit.jupiter.api.Test;

/**
 * Kafka Streams on Fjord: a stateful word count with a persistent (RocksDB) store, whose
 * changelog Streams creates with cleanup.policy=compact. The broker's cleaner compacts
 * it; the app is stopped, its local state wiped, and restarted: it restores the store
 * from the compacted changelog and goes on counting exactly.
 */
class StreamsWordCountTest {
    static final String[] WORDS = {"fjord", "kafka", "log", "stream", "table", "key"};

    static Properties streamsConfig(String app, Path state) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, ProduceConsumeTest.bootstrap());
        p.put(StreamsConfig.STATE_DIR_CONFIG, state.toString());
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        // Small changelog segments, cleaned eagerly: the restore reads a compacted log.
        p.put(StreamsConfig.topicPrefix(TopicConfig.SEGMENT_BYTES_CONFIG), 4096);
        p.put(StreamsConfig.topicPrefix(TopicConfig.MIN_CLEANABLE_DIRTY_RATIO_CONFIG), "0.01");
        // Small batches too: a segment rolls before a batch that would not fit, so the
        // active segment (never cleaned) stays under 4 KiB only if no batch is bigger.
        // With the default 16 KiB the last batch alone held half the changelog under load.
        p.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), 1024);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        return p;
    }

    static KafkaStreams wordCount(String app, String in, String out, Path state) {
        StreamsBuilder b = new StreamsBuilder();
        b.<String, String>stream(in)
            .flatMapValues(line -> Arrays.asList(line.split(" ")))
            .groupBy((k, word) -> word)
            .count(Materialized.as("counts"))
            .toStream()
            .to(out, Produced.with(Serdes.String(), Serdes.Long()));
        return new KafkaStreams(b.build(), streamsConfig(app, state));
    }

    static void produce(String topic, int lines, Map<String, Long> expected) {
        try (KafkaProducer<String, String> p = ProduceConsumeTest.producer("lz4")) {
            for (int i = 0; i < lines; i++) {
                String line = WORDS[i % WORDS.length] + " " + WORDS[(i * 7 + 3) % WORDS.length];
                for (String w : line.split(" ")) {
                    expected.merge(w, 1L, Long::sum);
                }
                p.send(new ProducerRecord<>(topic, "line-" + i, line));
            }
            p.flush();
        }
    }

    /** Reads `out` from the start until the latest count of every word is `expected`. */
    static void awaitCounts(String out, Map<String, Long> expected) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, ProduceConsumeTest.bootstrap());
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
        Map<String, Long> latest = new HashMap<>();
        try (KafkaConsumer<String, Long> consumer = new KafkaConsumer<>(c)) {
            List<TopicPartition> parts = List.of(new TopicPartition(out, 0));
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            long deadline = System.currentTimeMillis() + 90_000;
            while (!latest.equals(expected)) {
                assertTrue(System.currentTimeMillis() < deadline,
                    "counts " + latest + ", expected " + expected);
                for (ConsumerRecord<String, Long> r : consumer.poll(Duration.ofMillis(200))) {
                    latest.put(r.key(), r.value());
                }
            }
        }
    }

    /** How many records the changelog holds now, and how many distinct keys. */
    static long[] changelogShape(String changelog) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, ProduceConsumeTest.bootstrap());
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        long records = 0;
        java.util.Set<String> keys = new java.util.HashSet<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c)) {
            TopicPartition tp = new TopicPartition(changelog, 0);
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            long end = consumer.endOffsets(List.of(tp)).get(tp);
            while (consumer.position(tp) < end) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    records++;
                    keys.add(new String(r.key()));
                }
            }
        }
        return new long[] {records, keys.size()};
    }

    @Test
    void aWordCountRestoresItsStoreFromTheCompactedChangelogExactly() throws Exception {
        String id = UUID.randomUUID().toString().substring(0, 8);
        String in = "wc-in-" + id;
        String out = "wc-out-" + id;
        String app = "wc-" + id;
        String changelog = app + "-counts-changelog";
        try (Admin admin = AdminTest.admin()) {
            admin.createTopics(List.of(new NewTopic(in, 1, (short) 1), new NewTopic(out, 1, (short) 1)))
                .all().get();
        }
        Map<String, Long> expected = new HashMap<>();
        produce(in, 600, expected);
        Path state = Files.createTempDirectory("fjord-streams");
        try (KafkaStreams streams = wordCount(app, in, out, state)) {
            streams.start();
            awaitCounts(out, expected);
        }
        try (Admin admin = AdminTest.admin()) {
            ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
            Config config = admin.describeConfigs(List.of(r)).all().get().get(r);
            assertEquals("compact", config.get(TopicConfig.CLEANUP_POLICY_CONFIG).value());
        }
        // 1200 updates of 6 keys: the cleaner leaves a third at most (the active
        // segment, up to 4 KiB of small records, is never cleaned).
        long deadline = System.currentTimeMillis() + 60_000;
        long[] shape = changelogShape(changelog);
        while (shape[0] > 400) {
            assertTrue(System.currentTimeMillis() < deadline, "changelog not compacted: " + shape[0] + " records");
            Thread.sleep(300);
            shape = changelogShape(changelog);
        }
        assertEquals(WORDS.length, shape[1]);
        // Local state gone: the restart restores the store from the changelog.
        Path fresh = Files.createTempDirectory("fjord-streams");
        produce(in, 300, expected);
        try (KafkaStreams streams = wordCount(app, in, out, fresh)) {
            streams.start();
            awaitCounts(out, expected);
        }
    }
}
