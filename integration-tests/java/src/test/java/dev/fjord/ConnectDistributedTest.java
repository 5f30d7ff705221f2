package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.connect.cli.ConnectDistributed;
import org.apache.kafka.connect.runtime.Connect;
import org.junit.jupiter.api.Test;

/**
 * Kafka Connect in distributed mode on Fjord: the worker creates its config, offset and
 * status topics with cleanup.policy=compact, runs a FileStreamSource connector into a
 * topic (connect-file's FileStreamSource, see {@link FileSource}), and after a worker restart picks its connector up from the config topic and
 * goes on from the source offsets it stored: every line exactly once.
 */
class ConnectDistributedTest {
    /**
     * FileStreamSource as connect-file 4.3.1 ships it (4.4.0 is not served here), with
     * only its version() answered locally: 4.3.1 reads it through a kafka-clients class
     * that 4.4.0 moved.
     */
    public static class FileSource extends org.apache.kafka.connect.file.FileStreamSourceConnector {
        @Override
        public String version() {
            return "4.3.1";
        }

        @Override
        public Class<? extends org.apache.kafka.connect.connector.Task> taskClass() {
            return FileSourceTask.class;
        }
    }

    /** FileStreamSourceTask with the same version() shim. */
    public static class FileSourceTask extends org.apache.kafka.connect.file.FileStreamSourceTask {
        @Override
        public String version() {
            return "4.3.1";
        }
    }

    static Map<String, String> worker(String id) {
        Map<String, String> p = new HashMap<>();
        p.put("bootstrap.servers", ProduceConsumeTest.bootstrap());
        p.put("group.id", "connect-" + id);
        p.put("config.storage.topic", "connect-configs-" + id);
        p.put("offset.storage.topic", "connect-offsets-" + id);
        p.put("status.storage.topic", "connect-status-" + id);
        p.put("config.storage.replication.factor", "1");
        p.put("offset.storage.replication.factor", "1");
        p.put("status.storage.replication.factor", "1");
        p.put("offset.storage.partitions", "3");
        p.put("status.storage.partitions", "1");
        p.put("key.converter", "org.apache.kafka.connect.storage.StringConverter");
        p.put("value.converter", "org.apache.kafka.connect.storage.StringConverter");
        p.put("offset.flush.interval.ms", "500");
        p.put("listeners", "http://127.0.0.1:0");
        p.put("plugin.discovery", "hybrid_warn");
        return p;
    }

    static void write(Path file, int from, int to) throws Exception {
        StringBuilder b = new StringBuilder();
        for (int i = from; i < to; i++) {
            b.append("line-").append(i).append('\n');
        }
        Files.writeString(file, b.toString(), StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    }

    static List<String> readTopic(String topic, int count) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, ProduceConsumeTest.bootstrap());
        c.put(ConsumerConfig.GROUP_ID_CONFIG, "reader-" + UUID.randomUUID());
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        List<String> out = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 90_000;
            while (out.size() < count) {
                assertTrue(System.currentTimeMillis() < deadline, "read " + out.size() + " of " + count);
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    out.add(r.value());
                }
            }
            // Nothing more arrives (no line sent twice).
            for (int i = 0; i < 5; i++) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    out.add(r.value());
                }
            }
        }
        return out;
    }

    static int post(URI rest, String path, String json) throws Exception {
        HttpRequest req = HttpRequest.newBuilder(rest.resolve(path))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(json))
            .build();
        return HttpClient.newHttpClient().send(req, HttpResponse.BodyHandlers.ofString()).statusCode();
    }

    @Test
    void aFileSourceSurvivesAWorkerRestartWithItsOffsets() throws Exception {
        String id = UUID.randomUUID().toString().substring(0, 8);
        String topic = "connect-lines-" + id;
        Path file = Files.createTempFile("fjord-connect", ".txt");
        write(file, 0, 100);
        Connect<?> first = new ConnectDistributed().startConnect(worker(id));
        try {
            try (Admin admin = AdminTest.admin()) {
                for (String kind : List.of("configs", "offsets", "status")) {
                    ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, "connect-" + kind + "-" + id);
                    Config config = admin.describeConfigs(List.of(r)).all().get().get(r);
                    assertEquals("compact", config.get(TopicConfig.CLEANUP_POLICY_CONFIG).value(), kind);
                }
            }
            String connector = "{\"name\":\"lines-" + id + "\",\"config\":{"
                + "\"connector.class\":\"" + FileSource.class.getName() + "\","
                + "\"tasks.max\":\"1\",\"file\":\"" + file + "\",\"topic\":\"" + topic + "\"}}";
            int status = 0;
            long deadline = System.currentTimeMillis() + 60_000;
            // The REST API answers 409 while the worker is still joining its group.
            while (status != 201) {
                assertTrue(System.currentTimeMillis() < deadline, "connector not created: " + status);
                status = post(first.rest().serverUrl(), "/connectors", connector);
                if (status != 201) {
                    Thread.sleep(500);
                }
            }
            assertEquals(100, readTopic(topic, 100).size());
            // Let an offset flush happen (offset.flush.interval.ms=500), then stop.
            Thread.sleep(1_500);
        } finally {
            first.stop();
            first.awaitStop();
        }
        write(file, 100, 150);
        Connect<?> second = new ConnectDistributed().startConnect(worker(id));
        try {
            List<String> lines = readTopic(topic, 150);
            Set<String> distinct = new HashSet<>(lines);
            assertEquals(150, distinct.size());
            assertEquals(150, lines.size(), "no line twice: the source offsets survived the restart");
        } finally {
            second.stop();
            second.awaitStop();
        }
    }
}
