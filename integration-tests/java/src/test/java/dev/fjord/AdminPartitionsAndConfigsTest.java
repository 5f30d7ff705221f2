package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;
import org.junit.jupiter.api.Test;

/**
 * AdminClient: partitions, incremental config changes, log dirs, the cluster,
 * DeleteRecords and DescribeProducers, each answered as Apache Kafka's broker answers.
 */
class AdminPartitionsAndConfigsTest {
    static String topic(Admin admin, int partitions) throws Exception {
        String topic = "apc-" + UUID.randomUUID();
        admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        return topic;
    }

    @Test
    void partitionsGrowAndNeverShrink() throws Exception {
        try (Admin admin = AdminTest.admin()) {
            String topic = topic(admin, 1);
            admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all().get();
            assertEquals(3, admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size());
            // Fewer than it has: INVALID_PARTITIONS, as Kafka answers.
            ExecutionException shrink = assertThrows(ExecutionException.class, () ->
                    admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(2))).all().get());
            assertInstanceOf(InvalidPartitionsException.class, shrink.getCause());
            // The same count: INVALID_PARTITIONS too.
            ExecutionException same = assertThrows(ExecutionException.class, () ->
                    admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all().get());
            assertInstanceOf(InvalidPartitionsException.class, same.getCause());
        }
    }

    @Test
    void describeTopicsPagesThroughDescribeTopicPartitions() throws Exception {
        try (Admin admin = AdminTest.admin()) {
            String big = topic(admin, 5);
            String small = topic(admin, 1);
            // Two partitions a page: the client follows the broker's cursors to the end.
            Map<String, TopicDescription> d = admin.describeTopics(List.of(big, small),
                    new DescribeTopicsOptions().partitionSizeLimitPerResponse(2)).allTopicNames().get();
            assertEquals(List.of(0, 1, 2, 3, 4),
                    d.get(big).partitions().stream().map(TopicPartitionInfo::partition).toList());
            assertEquals(1, d.get(small).partitions().size());
            assertEquals(1, d.get(big).partitions().get(4).isr().size());
            assertTrue(d.get(big).topicId() != null && !d.get(big).topicId().equals(Uuid.ZERO_UUID));
        }
    }

    @Test
    void incrementalAlterConfigsSetsAndDeletesAndRefusesBadValues() throws Exception {
        try (Admin admin = AdminTest.admin()) {
            String topic = topic(admin, 1);
            ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            AlterConfigOp set = new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET);
            admin.incrementalAlterConfigs(Map.of(r, List.of(set))).all().get();
            ConfigEntry e = admin.describeConfigs(List.of(r)).all().get().get(r).get("retention.ms");
            assertEquals("7200000", e.value());
            assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, e.source());

            AlterConfigOp delete = new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE);
            admin.incrementalAlterConfigs(Map.of(r, List.of(delete))).all().get();
            ConfigEntry back = admin.describeConfigs(List.of(r)).all().get().get(r).get("retention.ms");
            assertEquals("604800000", back.value());
            assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, back.source());

            // Not a number: INVALID_CONFIG, and nothing changes.
            AlterConfigOp bad = new AlterConfigOp(new ConfigEntry("retention.ms", "soon"), AlterConfigOp.OpType.SET);
            ExecutionException refused = assertThrows(ExecutionException.class, () ->
                    admin.incrementalAlterConfigs(Map.of(r, List.of(bad))).all().get());
            assertInstanceOf(InvalidConfigurationException.class, refused.getCause());
            assertEquals("604800000", admin.describeConfigs(List.of(r)).all().get().get(r).get("retention.ms").value());
        }
    }

    @Test
    void theClusterAndItsLogDirsDescribeTheTopicsOnDisk() throws Exception {
        try (Admin admin = AdminTest.admin()) {
            String topic = topic(admin, 2);
            try (KafkaProducer<String, String> p = ProduceConsumeTest.producer("none")) {
                for (int i = 0; i < 10; i++) {
                    p.send(new ProducerRecord<>(topic, 1, "k", "some value " + i)).get();
                }
            }
            DescribeClusterResult cluster = admin.describeCluster();
            assertEquals(1, cluster.nodes().get().size());
            int node = cluster.nodes().get().iterator().next().id();
            assertEquals(node, cluster.controller().get().id());
            assertTrue(cluster.clusterId().get() != null && !cluster.clusterId().get().isEmpty());

            Map<String, LogDirDescription> dirs =
                    admin.describeLogDirs(List.of(node)).allDescriptions().get().get(node);
            assertEquals(1, dirs.size(), dirs.toString());
            LogDirDescription dir = dirs.values().iterator().next();
            assertNull(dir.error());
            ReplicaInfo written = dir.replicaInfos().get(new TopicPartition(topic, 1));
            ReplicaInfo empty = dir.replicaInfos().get(new TopicPartition(topic, 0));
            assertTrue(written != null && written.size() > 10 * "some value 0".length(), dir.replicaInfos().toString());
            assertEquals(0, empty.size());
            assertTrue(dir.totalBytes().orElse(0) > 0);
            assertTrue(dir.usableBytes().orElse(-1) >= 0);
        }
    }

    @Test
    void deleteRecordsMovesTheLogStartAndRefusesOffsetsPastTheEnd() throws Exception {
        try (Admin admin = AdminTest.admin()) {
            String topic = topic(admin, 1);
            TopicPartition tp = new TopicPartition(topic, 0);
            try (KafkaProducer<String, String> p = ProduceConsumeTest.producer("none")) {
                for (int i = 0; i < 10; i++) {
                    p.send(new ProducerRecord<>(topic, 0, "k", "v" + i)).get();
                }
            }
            DeletedRecords deleted = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(4)))
                    .lowWatermarks().get(tp).get();
            assertEquals(4, deleted.lowWatermark());
            assertEquals(4L, admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get().offset());
            // Past the high watermark (10): OFFSET_OUT_OF_RANGE, as Kafka answers.
            ExecutionException past = assertThrows(ExecutionException.class, () ->
                    admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(11))).all().get());
            assertInstanceOf(OffsetOutOfRangeException.class, past.getCause());
            // Up to the high watermark: everything.
            assertEquals(10, admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(-1)))
                    .lowWatermarks().get(tp).get().lowWatermark());
            assertEquals(10L, admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get().offset());
        }
    }

    @Test
    void describeProducersListsTheIdempotentProducerWithItsLastSequence() throws Exception {
        try (Admin admin = AdminTest.admin()) {
            String topic = topic(admin, 2);
            TopicPartition tp = new TopicPartition(topic, 0);
            long before = System.currentTimeMillis();
            // The Java producer's defaults are idempotent.
            try (KafkaProducer<String, String> p = ProduceConsumeTest.producer("none")) {
                for (int i = 0; i < 7; i++) {
                    p.send(new ProducerRecord<>(topic, 0, "k", "v" + i)).get();
                }
            }
            List<ProducerState> active = admin.describeProducers(List.of(tp)).partitionResult(tp).get().activeProducers();
            assertEquals(1, active.size(), active.toString());
            ProducerState state = active.get(0);
            assertTrue(state.producerId() >= 0);
            assertEquals(0, state.producerEpoch());
            assertEquals(6, state.lastSequence());
            assertTrue(state.lastTimestamp() >= before, state.toString());
            assertTrue(state.coordinatorEpoch().isEmpty());
            assertTrue(state.currentTransactionStartOffset().isEmpty());
            TopicPartition untouched = new TopicPartition(topic, 1);
            assertTrue(admin.describeProducers(List.of(untouched)).partitionResult(untouched).get().activeProducers().isEmpty());
        }
    }
}
