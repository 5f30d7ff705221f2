package dev.fjord;

import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.errors.ThrottlingQuotaExceededException;
import org.junit.jupiter.api.Test;

/**
 * The controller mutation quota (KIP-599) as the Java client sees it: the broker runs
 * with fjord.controller.mutation.rate=20 (java_client.rs), per client id.
 */
class QuotaTest {
    static Admin admin(String clientId) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, ProduceConsumeTest.bootstrap());
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, clientId);
        return Admin.create(p);
    }

    static NewTopic topic(int partitions) {
        return new NewTopic("quota-" + UUID.randomUUID(), partitions, (short) 1);
    }

    @Test
    void pastItsQuotaAClientIsThrottledAndAnotherIsNot() throws Exception {
        try (Admin flooder = admin("quota-flooder"); Admin other = admin("quota-other")) {
            // Admitted while under the quota, even past it: 15 of 20, then 40 into debt.
            flooder.createTopics(List.of(topic(15))).all().get();
            flooder.createTopics(List.of(topic(40))).all().get();
            CreateTopicsOptions noRetry = new CreateTopicsOptions().retryOnQuotaViolation(false);
            ExecutionException e = assertThrows(ExecutionException.class,
                    () -> flooder.createTopics(List.of(topic(1)), noRetry).all().get());
            ThrottlingQuotaExceededException t =
                    assertInstanceOf(ThrottlingQuotaExceededException.class, e.getCause());
            assertTrue(t.throttleTimeMs() > 0, "a throttle time to wait");
            // Another client id has a budget of its own.
            other.createTopics(List.of(topic(1)), noRetry).all().get();
        }
    }
}
