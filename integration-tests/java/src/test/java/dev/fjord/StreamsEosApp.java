package dev.fjord;

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;

/**
 * Not a JUnit test: a Kafka Streams application that integration-tests/tests/streams_eos.rs
 * starts as its own JVM, kills with SIGKILL and starts again, several times, while
 * the broker is killed and restarted under it too.
 *
 * <p>Arguments: bootstrap servers, state directory, input topic, output topic. It counts
 * the records of each key of the input ({@code processing.guarantee=exactly_once_v2},
 * a persistent store with a changelog, no record cache) and writes every new count to
 * the output, so a read_committed reader of the output must see, for each key, exactly
 * 1, 2, ..., n: a count written twice, skipped, or lost breaks exactly-once. It prints
 * {@code STATE <state>} on each state change and exits 1 if Streams gives up.
 */
public final class StreamsEosApp {
    private StreamsEosApp() {}

    static Properties config(String bootstrap, String stateDir) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, "fjord-eos-counts");
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // A killed instance leaves its members behind: the broker drops them after the
        // session timeout (the smallest Fjord allows), not the default 45 s.
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 6000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1000);
        // Retry across the broker's restart rather than fail the task.
        p.put(StreamsConfig.producerPrefix(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG), 120000);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG), 200);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG), 200);
        return p;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: StreamsEosApp BOOTSTRAP STATE_DIR INPUT OUTPUT");
            System.exit(2);
        }
        StreamsBuilder b = new StreamsBuilder();
        b.<String, String>stream(args[2])
            .groupByKey()
            .count(Materialized.as("eos-counts"))
            .toStream()
            .to(args[3], Produced.with(Serdes.String(), Serdes.Long()));
        KafkaStreams streams = new KafkaStreams(b.build(), config(args[0], args[1]));
        CountDownLatch failed = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            System.out.println("STATE " + now);
            System.out.flush();
            if (now == KafkaStreams.State.ERROR) {
                failed.countDown();
            }
        });
        streams.start();
        failed.await();
        streams.close(Duration.ofSeconds(5));
        System.exit(1);
    }
}
