package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.UnknownMemberIdException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.Test;

/** Positions, timestamps and group management, as Kafka's broker answers them. */
class GroupsAndOffsetsTest {
    /** A topic of `partitions` with `perPartition` records each, timestamps 1000 + i. */
    static String filled(int partitions, int perPartition) throws Exception {
        String topic = "go-" + UUID.randomUUID();
        try (Admin admin = AdminTest.admin()) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        }
        try (KafkaProducer<String, String> p = ProduceConsumeTest.producer("none")) {
            for (int part = 0; part < partitions; part++) {
                for (int i = 0; i < perPartition; i++) {
                    p.send(new ProducerRecord<>(topic, part, 1000L + i, "k", "v" + i)).get();
                }
            }
        }
        return topic;
    }

    @Test
    void seekOffsetsForTimesAndTheLogBounds() throws Exception {
        String topic = filled(2, 10);
        TopicPartition tp = new TopicPartition(topic, 1);
        try (KafkaConsumer<String, String> c = ProduceConsumeTest.consumer("unused-" + topic)) {
            c.assign(List.of(tp));
            assertEquals(0L, c.beginningOffsets(List.of(tp)).get(tp));
            assertEquals(10L, c.endOffsets(List.of(tp)).get(tp));
            OffsetAndTimestamp at = c.offsetsForTimes(Map.of(tp, 1004L)).get(tp);
            assertEquals(4L, at.offset());
            assertEquals(1004L, at.timestamp());
            // Past the newest timestamp: no offset (Kafka answers -1, the client null).
            assertEquals(null, c.offsetsForTimes(Map.of(tp, 5000L)).get(tp));
            c.seek(tp, 7);
            List<String> values = new ArrayList<>();
            long deadline = System.currentTimeMillis() + 20_000;
            while (values.size() < 3 && System.currentTimeMillis() < deadline) {
                c.poll(Duration.ofMillis(300)).forEach(r -> values.add(r.value()));
            }
            assertEquals(List.of("v7", "v8", "v9"), values);
        }
        try (Admin admin = AdminTest.admin()) {
            TopicPartition p0 = new TopicPartition(topic, 0);
            ListOffsetsResult earliest = admin.listOffsets(Map.of(p0, OffsetSpec.earliest()));
            assertEquals(0L, earliest.partitionResult(p0).get().offset());
            assertEquals(10L, admin.listOffsets(Map.of(p0, OffsetSpec.latest())).partitionResult(p0).get().offset());
            assertEquals(9L, admin.listOffsets(Map.of(p0, OffsetSpec.maxTimestamp())).partitionResult(p0).get().offset());
            assertEquals(3L, admin.listOffsets(Map.of(p0, OffsetSpec.forTimestamp(1003L))).partitionResult(p0).get().offset());
            assertEquals(1, admin.describeCluster().nodes().get().size());
        }
    }

    @Test
    void cooperativeStickyGroupsCommitAndAreManagedByTheAdminClient() throws Exception {
        String topic = filled(4, 5);
        String group = "coop-" + topic;
        ConcurrentLinkedQueue<String> events = new ConcurrentLinkedQueue<>();
        Set<TopicPartition> assigned = new HashSet<>();
        try (KafkaConsumer<String, String> c = consumer(group, "member-1")) {
            c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                    events.add("revoked " + ps.size());
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                    events.add("assigned " + ps.size());
                    assigned.addAll(ps);
                }
            });
            int read = 0;
            long deadline = System.currentTimeMillis() + 30_000;
            while (read < 20 && System.currentTimeMillis() < deadline) {
                read += c.poll(Duration.ofMillis(300)).count();
            }
            assertEquals(20, read);
            assertEquals(4, assigned.size(), events.toString());
            c.commitSync();
            OffsetAndMetadata committed = c.committed(Set.of(new TopicPartition(topic, 2))).get(new TopicPartition(topic, 2));
            assertEquals(5L, committed.offset());
            try (Admin admin = AdminTest.admin()) {
                assertTrue(admin.listConsumerGroups().all().get().stream().anyMatch(g -> g.groupId().equals(group)));
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
                assertEquals(1, d.members().size());
                assertEquals("member-1", d.members().iterator().next().groupInstanceId().orElse(""));
                Map<TopicPartition, OffsetAndMetadata> offsets =
                        admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
                assertEquals(4, offsets.size());
            }
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        try (Admin admin = AdminTest.admin()) {
            // A static member does not leave on close (its session must expire), so the
            // group is not empty: Kafka refuses offset changes with UNKNOWN_MEMBER_ID.
            ExecutionException busy = assertThrows(ExecutionException.class, () ->
                    admin.alterConsumerGroupOffsets(group, Map.of(tp, new OffsetAndMetadata(1))).all().get());
            assertInstanceOf(UnknownMemberIdException.class, busy.getCause());
        }
        // A dynamic member leaves on close: its group is empty, and the admin may change it.
        String plain = "plain-" + topic;
        try (KafkaConsumer<String, String> c = ProduceConsumeTest.consumer(plain)) {
            c.subscribe(List.of(topic));
            int read = 0;
            long deadline = System.currentTimeMillis() + 30_000;
            while (read < 20 && System.currentTimeMillis() < deadline) {
                read += c.poll(Duration.ofMillis(300)).count();
            }
            assertEquals(20, read);
            c.commitSync();
        }
        try (Admin admin = AdminTest.admin()) {
            String group2 = plain;
            admin.alterConsumerGroupOffsets(group2, Map.of(tp, new OffsetAndMetadata(1))).all().get();
            OffsetAndMetadata now = admin.listConsumerGroupOffsets(group2).partitionsToOffsetAndMetadata().get().get(tp);
            assertNotNull(now);
            assertEquals(1L, now.offset());
            admin.deleteConsumerGroupOffsets(group2, Set.of(tp)).all().get();
            assertEquals(null, admin.listConsumerGroupOffsets(group2).partitionsToOffsetAndMetadata().get().get(tp));
            admin.deleteConsumerGroups(List.of(group2)).all().get();
            assertTrue(admin.listConsumerGroups().all().get().stream().noneMatch(g -> g.groupId().equals(group2)));
        }
    }

    @Test
    void rangeAssignorSplitsContiguousRangesAndRevokesEagerlyOnJoin() throws Exception {
        String topic = filled(4, 3);
        String group = "range-" + topic;
        ConcurrentLinkedQueue<String> firstEvents = new ConcurrentLinkedQueue<>();
        Set<TopicPartition> firstOwns = new HashSet<>();
        Set<TopicPartition> secondOwns = new HashSet<>();
        try (KafkaConsumer<String, String> first = rangeConsumer(group);
             KafkaConsumer<String, String> second = rangeConsumer(group)) {
            first.subscribe(List.of(topic), listener(firstEvents, firstOwns));
            long deadline = System.currentTimeMillis() + 30_000;
            while (firstOwns.size() < 4 && System.currentTimeMillis() < deadline) {
                first.poll(Duration.ofMillis(200));
            }
            assertEquals(4, firstOwns.size(), firstEvents.toString());
            second.subscribe(List.of(topic), listener(new ConcurrentLinkedQueue<>(), secondOwns));
            while ((firstOwns.size() != 2 || secondOwns.size() != 2) && System.currentTimeMillis() < deadline) {
                first.poll(Duration.ofMillis(100));
                second.poll(Duration.ofMillis(100));
            }
            assertEquals(2, firstOwns.size(), firstEvents.toString());
            assertEquals(2, secondOwns.size());
            // Range: each member a contiguous run of partitions, together all four.
            for (Set<TopicPartition> owns : List.of(firstOwns, secondOwns)) {
                int low = owns.stream().mapToInt(TopicPartition::partition).min().orElse(-9);
                assertTrue(owns.contains(new TopicPartition(topic, low + 1)), owns.toString());
            }
            Set<TopicPartition> all = new HashSet<>(firstOwns);
            all.addAll(secondOwns);
            assertEquals(4, all.size());
            // The eager protocol: the first member gave up all four before taking two.
            List<String> events = new ArrayList<>(firstEvents);
            assertEquals(List.of("assigned 4", "revoked 4", "assigned 2"), events.subList(0, 3));

            // An async commit completes with its callback, and committed() reads it back.
            TopicPartition mine = firstOwns.iterator().next();
            ConcurrentLinkedQueue<Object> outcome = new ConcurrentLinkedQueue<>();
            first.commitAsync(Map.of(mine, new OffsetAndMetadata(2)), (offsets, error) ->
                    outcome.add(error == null ? offsets : error));
            while (outcome.isEmpty() && System.currentTimeMillis() < deadline) {
                first.poll(Duration.ofMillis(100));
                second.poll(Duration.ofMillis(100));
            }
            assertEquals(List.of(Map.of(mine, new OffsetAndMetadata(2))), new ArrayList<>(outcome));
            assertEquals(2L, first.committed(Set.of(mine)).get(mine).offset());
        }
    }

    static KafkaConsumer<String, String> rangeConsumer(String group) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, ProduceConsumeTest.bootstrap());
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName());
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return new KafkaConsumer<>(c);
    }

    /** Records "assigned N"/"revoked N" and keeps `owns` up to date. */
    static ConsumerRebalanceListener listener(ConcurrentLinkedQueue<String> events, Set<TopicPartition> owns) {
        return new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                if (!ps.isEmpty()) {
                    events.add("revoked " + ps.size());
                }
                owns.removeAll(ps);
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                events.add("assigned " + ps.size());
                owns.addAll(ps);
            }
        };
    }

    /** A cooperative-sticky, static (group.instance.id) member of `group`. */
    static KafkaConsumer<String, String> consumer(String group, String instance) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, ProduceConsumeTest.bootstrap());
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instance);
        c.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName());
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG,
                org.apache.kafka.common.serialization.StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG,
                org.apache.kafka.common.serialization.StringDeserializer.class.getName());
        return new KafkaConsumer<>(c);
    }
}
