// End-to-end latency with Apache Kafka's Java client, the shape of fjord-bench's own e2e:
// one producer sends at a target rate, one consumer (assigned every partition, from the
// beginning of a fresh topic) reads; each record carries its send time and is timed from
// send to receipt. A warm-up record is sent and awaited first, so connection set-up and
// the first fetch are not counted. Kafka's EndToEndLatency tool sends one record at a time
// and waits for it, which measures no rate; this is why the bench has its own.
//
// Run as a single source file on the Kafka classpath (no build step):
//   java -cp "$(bench/peers/kafka.sh classpath)" bench/peers/java/E2eLatency.java \
//       BOOTSTRAP TOPIC PARTITIONS RECORDS RATE RECORD_SIZE ACKS LINGER_MS [KEY=VALUE...]
// Extra KEY=VALUE pairs go to both clients' configs (unknown ones are ignored by each).
// Prints one line: records=N elapsed_ms=T p50_ms=.. p99_ms=.. p999_ms=.. max_ms=..

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class E2eLatency {
    static final long WARM_UP = Long.MAX_VALUE;

    public static void main(String[] args) throws Exception {
        if (args.length < 8) {
            System.err.println("E2eLatency BOOTSTRAP TOPIC PARTITIONS RECORDS RATE RECORD_SIZE ACKS LINGER_MS [K=V...]");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1];
        int partitions = Integer.parseInt(args[2]);
        long records = Long.parseLong(args[3]);
        long rate = Long.parseLong(args[4]);
        int size = Math.max(8, Integer.parseInt(args[5]));
        Properties extra = new Properties();
        for (int i = 8; i < args.length; i++) {
            String[] kv = args[i].split("=", 2);
            extra.setProperty(kv[0], kv.length > 1 ? kv[1] : "");
        }
        Properties p = new Properties();
        p.setProperty("bootstrap.servers", bootstrap);
        p.setProperty("acks", args[6]);
        p.setProperty("linger.ms", args[7]);
        p.setProperty("key.serializer", ByteArraySerializer.class.getName());
        p.setProperty("value.serializer", ByteArraySerializer.class.getName());
        p.putAll(extra);
        Properties c = new Properties();
        c.setProperty("bootstrap.servers", bootstrap);
        c.setProperty("enable.auto.commit", "false");
        c.setProperty("key.deserializer", ByteArrayDeserializer.class.getName());
        c.setProperty("value.deserializer", ByteArrayDeserializer.class.getName());
        c.putAll(extra);

        long[] latencies = new long[(int) Math.min(records, Integer.MAX_VALUE - 8)];
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p);
             KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) tps.add(new TopicPartition(topic, i));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            byte[] value = new byte[size];
            ByteBuffer.wrap(value).putLong(WARM_UP);
            producer.send(new ProducerRecord<>(topic, value)).get();
            awaitWarmUp(consumer);

            long start = System.nanoTime();
            Thread sender = new Thread(() -> send(producer, topic, records, rate, size, start));
            sender.start();
            int received = 0;
            long deadline = System.nanoTime() + Duration.ofMinutes(10).toNanos();
            while (received < latencies.length && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                    long sent = ByteBuffer.wrap(r.value()).getLong();
                    if (sent != WARM_UP && received < latencies.length) {
                        latencies[received++] = System.nanoTime() - sent;
                    }
                }
            }
            long elapsed = System.nanoTime() - start;
            sender.join();
            if (received < latencies.length) {
                System.err.println("only " + received + " of " + latencies.length + " records arrived");
                System.exit(1);
            }
            Arrays.sort(latencies);
            System.out.printf("records=%d elapsed_ms=%.3f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f%n",
                received, elapsed / 1e6, ms(latencies, 0.5), ms(latencies, 0.99),
                ms(latencies, 0.999), latencies[latencies.length - 1] / 1e6);
        }
    }

    static void awaitWarmUp(KafkaConsumer<byte[], byte[]> consumer) {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (System.nanoTime() < deadline) {
            for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                if (ByteBuffer.wrap(r.value()).getLong() == WARM_UP) return;
            }
        }
        throw new IllegalStateException("the warm-up record did not arrive in 60 s");
    }

    static void send(KafkaProducer<byte[], byte[]> producer, String topic, long records, long rate,
                     int size, long start) {
        for (long n = 0; n < records; n++) {
            if (rate > 0 && n % 16 == 0) {
                long due = start + (long) (n * 1e9 / rate);
                long wait = due - System.nanoTime();
                if (wait > 100_000) {
                    try {
                        Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            }
            byte[] value = new byte[size];
            ByteBuffer.wrap(value).putLong(System.nanoTime());
            producer.send(new ProducerRecord<>(topic, value), (meta, error) -> {
                if (error != null) {
                    // The consumer would wait out its deadline for a record never written.
                    System.err.println("send failed: " + error);
                    System.exit(1);
                }
            });
        }
        producer.flush();
    }

    static double ms(long[] sorted, double q) {
        int i = (int) Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
        return sorted[Math.max(0, i)] / 1e6;
    }
}
