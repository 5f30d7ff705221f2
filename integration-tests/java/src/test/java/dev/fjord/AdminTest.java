package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.junit.jupiter.api.Test;

/** AdminClient basics, each checked against what Kafka's own broker answers. */
class AdminTest {
    static Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, ProduceConsumeTest.bootstrap());
        return Admin.create(p);
    }

    @Test
    void topicsAreCreatedWithConfigsDescribedListedAndDeleted() throws Exception {
        String name = "admin-" + UUID.randomUUID();
        try (Admin admin = admin()) {
            NewTopic t = new NewTopic(name, 3, (short) 1).configs(Map.of("retention.ms", "3600000"));
            admin.createTopics(List.of(t)).all().get();
            // Kafka's answer to a second creation: TopicExistsException.
            ExecutionException again =
                    assertThrows(ExecutionException.class, () -> admin.createTopics(List.of(t)).all().get());
            assertInstanceOf(TopicExistsException.class, again.getCause());
            assertTrue(admin.listTopics().names().get().contains(name));
            TopicDescription d = admin.describeTopics(List.of(name)).allTopicNames().get().get(name);
            assertEquals(3, d.partitions().size());
            ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, name);
            Config c = admin.describeConfigs(List.of(r)).all().get().get(r);
            assertEquals("3600000", c.get("retention.ms").value());
            // A boolean typo is refused (INVALID_CONFIG), not read as false.
            NewTopic bad = new NewTopic(name + "-bad", 1, (short) 1).configs(Map.of("fjord.fsync.on.ack", "yes"));
            ExecutionException refused =
                    assertThrows(ExecutionException.class, () -> admin.createTopics(List.of(bad)).all().get());
            assertInstanceOf(InvalidConfigurationException.class, refused.getCause());
            admin.deleteTopics(List.of(name)).all().get();
            Set<String> names = admin.listTopics().names().get();
            assertFalse(names.contains(name));
        }
    }
}
