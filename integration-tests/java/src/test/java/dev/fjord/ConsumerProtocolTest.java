package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.Test;

/**
 * KafkaConsumer with group.protocol=consumer (KIP-848): the broker assigns, members
 * reconcile by heartbeats. The runner starts the broker with a 500 ms heartbeat
 * interval so that reconciliations take seconds, not tens of seconds.
 */
class ConsumerProtocolTest {
    /** Which member owns each partition, as the members' rebalance listeners say. */
    static final class Ownership {
        final Map<TopicPartition, String> owner = new ConcurrentHashMap<>();
        final ConcurrentLinkedQueue<String> violations = new ConcurrentLinkedQueue<>();

        synchronized void assigned(String member, Collection<TopicPartition> parts) {
            for (TopicPartition tp : parts) {
                String before = owner.putIfAbsent(tp, member);
                if (before != null && !before.equals(member)) {
                    violations.add(tp + " assigned to " + member + " while " + before + " owns it");
                }
            }
        }

        synchronized void released(String member, Collection<TopicPartition> parts) {
            for (TopicPartition tp : parts) {
                owner.remove(tp, member);
            }
        }

        Set<TopicPartition> of(String member) {
            return owner.entrySet().stream().filter(e -> e.getValue().equals(member))
                .map(Map.Entry::getKey).collect(Collectors.toSet());
        }
    }

    /** One consumer on its own thread, polling until stopped. */
    static final class Member implements AutoCloseable {
        final String name;
        final Thread thread;
        final AtomicBoolean stop = new AtomicBoolean();
        final ConcurrentLinkedQueue<ConsumerRecord<String, String>> records = new ConcurrentLinkedQueue<>();
        final AtomicReference<Throwable> failure = new AtomicReference<>();

        Member(String name, String group, Properties extra, List<String> topics, String pattern, Ownership ownership) {
            this.name = name;
            Properties c = new Properties();
            c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, ProduceConsumeTest.bootstrap());
            c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
            c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            c.putAll(extra);
            ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                    ownership.released(name, parts);
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                    ownership.assigned(name, parts);
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> parts) {
                    ownership.released(name, parts);
                }
            };
            thread = new Thread(() -> {
                try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
                    if (pattern != null) {
                        consumer.subscribe(new SubscriptionPattern(pattern), listener);
                    } else {
                        consumer.subscribe(topics, listener);
                    }
                    while (!stop.get()) {
                        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(100))) {
                            records.add(r);
                        }
                        try {
                            consumer.commitSync();
                        } catch (CommitFailedException | RebalanceInProgressException e) {
                            // STALE_MEMBER_EPOCH while the member's epoch moves, or a
                            // classic member's commit during its rebalance: Kafka
                            // refuses such commits too; the next poll commits again.
                        }
                    }
                } catch (Throwable t) {
                    failure.set(t);
                }
            }, name);
            thread.start();
        }

        @Override
        public void close() throws Exception {
            stop.set(true);
            thread.join(60_000);
            if (failure.get() != null) {
                throw new AssertionError(name + " failed", failure.get());
            }
        }
    }

    static void awaitTrue(String what, BooleanSupplier cond) throws InterruptedException {
        long deadline = System.currentTimeMillis() + 60_000;
        while (!cond.getAsBoolean()) {
            assertTrue(System.currentTimeMillis() < deadline, "timed out waiting: " + what);
            Thread.sleep(50);
        }
    }

    static String topic(String prefix, int partitions) throws Exception {
        String t = prefix + UUID.randomUUID();
        try (Admin admin = AdminTest.admin()) {
            admin.createTopics(List.of(new NewTopic(t, partitions, (short) 1))).all().get();
        }
        return t;
    }

    static void produce(String topic, int partitions, int perPartition) throws Exception {
        produce(topic, partitions, perPartition, "");
    }

    /** Values are prefix + "partition-index", each distinct within one call. */
    static void produce(String topic, int partitions, int perPartition, String prefix) throws Exception {
        try (KafkaProducer<String, String> p = ProduceConsumeTest.producer("none")) {
            for (int part = 0; part < partitions; part++) {
                for (int i = 0; i < perPartition; i++) {
                    p.send(new ProducerRecord<>(topic, part, "k", prefix + part + "-" + i));
                }
            }
            p.flush();
        }
    }

    static Set<TopicPartition> partitions(String topic, int n) {
        Set<TopicPartition> all = new HashSet<>();
        for (int i = 0; i < n; i++) {
            all.add(new TopicPartition(topic, i));
        }
        return all;
    }

    @Test
    void twoMembersSplitATopicUniformlyAndReadEveryRecordOnce() throws Exception {
        String topic = topic("cp-", 6);
        produce(topic, 6, 50);
        String group = "cp-" + UUID.randomUUID();
        Ownership own = new Ownership();
        try (Member a = new Member("a", group, new Properties(), List.of(topic), null, own);
             Member b = new Member("b", group, new Properties(), List.of(topic), null, own)) {
            awaitTrue("both own three partitions", () -> own.of("a").size() == 3 && own.of("b").size() == 3);
            awaitTrue("every record read", () -> a.records.size() + b.records.size() >= 300);
            try (Admin admin = AdminTest.admin()) {
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
                assertEquals(GroupType.CONSUMER, d.type());
                assertEquals(2, d.members().size());
                assertEquals("uniform", d.partitionAssignor());
                // The members subscribe to the topic: its offsets cannot be deleted.
                ExecutionException e = assertThrows(ExecutionException.class, () -> admin
                    .deleteConsumerGroupOffsets(group, Set.of(new TopicPartition(topic, 0))).all().get());
                assertTrue(e.getCause() instanceof GroupSubscribedToTopicException, e.toString());
            }
        }
        assertTrue(own.violations.isEmpty(), own.violations.toString());
    }

    @Test
    void theRangeAssignorCoPartitionsTwoTopics() throws Exception {
        String t1 = topic("cpr-", 4);
        String t2 = topic("cpr-", 4);
        String group = "cpr-" + UUID.randomUUID();
        Properties range = new Properties();
        range.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, "range");
        Ownership own = new Ownership();
        try (Member a = new Member("a", group, range, List.of(t1, t2), null, own);
             Member b = new Member("b", group, range, List.of(t1, t2), null, own)) {
            awaitTrue("both own four partitions", () -> own.of("a").size() == 4 && own.of("b").size() == 4);
            for (String m : List.of("a", "b")) {
                Set<Integer> in1 = own.of(m).stream().filter(tp -> tp.topic().equals(t1))
                    .map(TopicPartition::partition).collect(Collectors.toSet());
                Set<Integer> in2 = own.of(m).stream().filter(tp -> tp.topic().equals(t2))
                    .map(TopicPartition::partition).collect(Collectors.toSet());
                assertEquals(in1, in2, m + " is co-partitioned");
            }
        }
        assertTrue(own.violations.isEmpty(), own.violations.toString());
    }

    @Test
    void aRegexSubscriptionFollowsTopicsCreatedLater() throws Exception {
        String prefix = "rx" + UUID.randomUUID().toString().substring(0, 8) + "-";
        String first = topic(prefix, 2);
        String group = "cpx-" + UUID.randomUUID();
        Ownership own = new Ownership();
        try (Member m = new Member("m", group, new Properties(), null, prefix + ".*", own)) {
            awaitTrue("the matching topic is owned", () -> own.of("m").equals(partitions(first, 2)));
            String later = topic(prefix, 3);
            awaitTrue("the topic created later is owned too", () -> own.of("m").size() == 5);
            assertTrue(own.of("m").containsAll(partitions(later, 3)));
        }
    }

    @Test
    void aStaticMemberComesBackToItsPartitions() throws Exception {
        String topic = topic("cps-", 4);
        String group = "cps-" + UUID.randomUUID();
        Ownership own = new Ownership();
        Properties one = new Properties();
        one.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-1");
        Properties two = new Properties();
        two.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-2");
        Set<TopicPartition> before;
        int epochBefore;
        try (Member keep = new Member("keep", group, two, List.of(topic), null, own)) {
            try (Member away = new Member("away", group, one, List.of(topic), null, own)) {
                awaitTrue("both own two", () -> own.of("away").size() == 2 && own.of("keep").size() == 2);
                before = own.of("away");
            }
            try (Admin admin = AdminTest.admin()) {
                epochBefore = admin.describeConsumerGroups(List.of(group)).all().get().get(group)
                    .groupEpoch().orElse(-1);
            }
            // Its static leave kept its partitions: nobody took them.
            Thread.sleep(1_500);
            assertEquals(2, own.of("keep").size());
            try (Member back = new Member("back", group, one, List.of(topic), null, own)) {
                awaitTrue("the same partitions again", () -> own.of("back").equals(before));
                try (Admin admin = AdminTest.admin()) {
                    int epochAfter = admin.describeConsumerGroups(List.of(group)).all().get().get(group)
                        .groupEpoch().orElse(-1);
                    assertEquals(epochBefore, epochAfter, "a static rejoin is no rebalance");
                }
            }
        }
        assertTrue(own.violations.isEmpty(), own.violations.toString());
    }

    @Test
    void aRollingReplacementOfThreeMembersNeverOwnsAPartitionTwice() throws Exception {
        String topic = topic("cpl-", 9);
        String group = "cpl-" + UUID.randomUUID();
        Ownership own = new Ownership();
        Member[] members = new Member[3];
        for (int i = 0; i < 3; i++) {
            members[i] = new Member("old-" + i, group, new Properties(), List.of(topic), null, own);
        }
        awaitTrue("nine partitions owned", () -> own.owner.size() == 9);
        for (int i = 0; i < 3; i++) {
            Member fresh = new Member("new-" + i, group, new Properties(), List.of(topic), null, own);
            String name = fresh.name;
            awaitTrue(name + " owns its share", () -> own.of(name).size() >= 2);
            members[i].close();
            members[i] = fresh;
            awaitTrue("nine partitions owned again", () -> own.owner.size() == 9);
        }
        for (Member m : members) {
            m.close();
        }
        assertTrue(own.violations.isEmpty(), own.violations.toString());
    }

    static GroupType typeOf(String group) throws Exception {
        try (Admin admin = AdminTest.admin()) {
            return admin.describeConsumerGroups(List.of(group)).all().get().get(group).type();
        }
    }

    static Set<String> valuesRead(Member... members) {
        Set<String> all = new HashSet<>();
        for (Member m : members) {
            for (ConsumerRecord<String, String> r : m.records) {
                all.add(r.value());
            }
        }
        return all;
    }

    /**
     * KIP-848's online migration: a classic group upgrades when a consumer-protocol
     * member joins, its classic members carry on inside it (JoinGroup/SyncGroup), and
     * it downgrades once the last consumer-protocol member leaves; members are replaced
     * one at a time, as in a rolling upgrade, while the group keeps consuming.
     */
    @Test
    void aGroupMigratesFromClassicToConsumerAndBackWhileItConsumes() throws Exception {
        String topic = topic("cpm-", 6);
        produce(topic, 6, 20);
        String group = "cpm-" + UUID.randomUUID();
        Ownership own = new Ownership();
        Properties classic = new Properties();
        classic.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        classic.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName());
        classic.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "300");
        classic.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        Properties modern = new Properties();
        Member c1 = new Member("c1", group, classic, List.of(topic), null, own);
        Member c2 = new Member("c2", group, classic, List.of(topic), null, own);
        awaitTrue("the classic members own all six", () -> own.of("c1").size() + own.of("c2").size() == 6
            && !own.of("c1").isEmpty() && !own.of("c2").isEmpty());
        assertEquals(GroupType.CLASSIC, typeOf(group));

        Member n1 = new Member("n1", group, modern, List.of(topic), null, own);
        awaitTrue("a consumer group now", () -> {
            try {
                return typeOf(group) == GroupType.CONSUMER;
            } catch (Exception e) {
                return false;
            }
        });
        awaitTrue("n1 owns its share", () -> own.of("n1").size() == 2 && own.owner.size() == 6);
        c1.close();
        Member n2 = new Member("n2", group, modern, List.of(topic), null, own);
        awaitTrue("n2 owns its share", () -> own.of("n2").size() >= 2 && own.owner.size() == 6);
        c2.close();
        awaitTrue("the consumer members own all six", () -> own.of("n1").size() + own.of("n2").size() == 6);
        try (Admin admin = AdminTest.admin()) {
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
            assertEquals(GroupType.CONSUMER, d.type());
            assertEquals(2, d.members().size());
        }

        Member c3 = new Member("c3", group, classic, List.of(topic), null, own);
        awaitTrue("c3 owns its share", () -> own.of("c3").size() >= 2 && own.owner.size() == 6);
        n1.close();
        Member c4 = new Member("c4", group, classic, List.of(topic), null, own);
        awaitTrue("c4 owns its share", () -> !own.of("c4").isEmpty() && own.owner.size() == 6);
        n2.close();
        awaitTrue("a classic group again", () -> {
            try {
                return typeOf(group) == GroupType.CLASSIC;
            } catch (Exception e) {
                return false;
            }
        });
        awaitTrue("the classic members own all six", () -> own.of("c3").size() + own.of("c4").size() == 6);
        produce(topic, 6, 20, "late-");
        awaitTrue("every record read", () -> valuesRead(c1, c2, n1, n2, c3, c4).size() == 2 * 6 * 20);
        c3.close();
        c4.close();
        assertTrue(own.violations.isEmpty(), own.violations.toString());
    }
}
