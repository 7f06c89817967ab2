// Hourly order totals per customer as a Kafka Streams application, written for Sluice's peer
// benchmark (bench/peers): the same aggregation as Sluice's `windowed_aggregate` transform with
// { key = "customer_id", time = "t", value = "amount", window = "1h", emit = "updates",
//   aggregations = "count,sum,avg" }.
//
// Reads JSON orders {"customer_id": "c42", "t": <epoch ms>, "amount": 12.5} keyed by customer
// (the inputs are co-partitioned by it, so there is no repartition), takes the event time from
// `t`, aggregates count and sum per customer in hourly tumbling windows (a RocksDB window store
// with its changelog, the defaults) and writes, after every order, its window's
// {"key", "window_start", "window_end", "count", "sum", "avg"} to the output topic, keyed by
// customer.
//
//   java -cp 'LIBS/*:CLASSES' WindowedStreams BOOTSTRAP APPLICATION_ID INPUT[,INPUT...] OUTPUT THREADS GRACE_MS [KEY=VALUE...]
//
// GRACE_MS is the windows' grace period (Sluice's `allowed_lateness`). KEY=VALUE pairs override
// the Streams properties below (for tuning experiments).

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.state.WindowStore;

public final class WindowedStreams {
    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonGenerator.Feature.WRITE_BIGDECIMAL_AS_PLAIN);

    /** The event time: the order's `t`, epoch milliseconds, read with Jackson's streaming parser. */
    public static final class EventTime implements TimestampExtractor {
        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            try (JsonParser parser = JSON.getFactory().createParser((byte[]) record.value())) {
                if (parser.nextToken() == JsonToken.START_OBJECT) {
                    while (parser.nextToken() == JsonToken.FIELD_NAME) {
                        String name = parser.currentName();
                        parser.nextToken();
                        if (name.equals("t")) {
                            return parser.getValueAsLong();
                        }
                        parser.skipChildren();
                    }
                }
            } catch (Exception e) {
                throw new RuntimeException("cannot read the event time: " + e.getMessage(), e);
            }
            throw new RuntimeException("an order without `t`");
        }
    }

    /** The aggregate, 16 bytes: the count (a long) and the sum (a double). */
    static byte[] add(byte[] value, byte[] aggregate) {
        double amount;
        try {
            amount = JSON.readTree(value).get("amount").asDouble();
        } catch (Exception e) {
            throw new RuntimeException("cannot read the order: " + e.getMessage(), e);
        }
        ByteBuffer before = ByteBuffer.wrap(aggregate);
        return ByteBuffer.allocate(16).putLong(before.getLong(0) + 1).putDouble(before.getDouble(8) + amount).array();
    }

    /** A number as Sluice writes it: whole numbers without a fraction. */
    static void putNumber(ObjectNode node, String field, double v) {
        if (v == Math.rint(v) && Math.abs(v) < 1e15) {
            node.put(field, (long) v);
        } else {
            node.put(field, v);
        }
    }

    /** The window's result, as `windowed_aggregate` writes it. */
    static KeyValue<byte[], byte[]> result(Windowed<byte[]> window, byte[] aggregate) {
        ByteBuffer buffer = ByteBuffer.wrap(aggregate);
        long count = buffer.getLong(0);
        double sum = buffer.getDouble(8);
        ObjectNode out = JSON.createObjectNode();
        out.put("key", new String(window.key(), StandardCharsets.UTF_8));
        out.put("window_start", window.window().start());
        out.put("window_end", window.window().end());
        out.put("count", count);
        putNumber(out, "sum", sum);
        putNumber(out, "avg", sum / count);
        try {
            return KeyValue.pair(window.key(), JSON.writeValueAsBytes(out));
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 6) {
            System.err.println("usage: WindowedStreams BOOTSTRAP APPLICATION_ID INPUT[,INPUT...] OUTPUT THREADS GRACE_MS [KEY=VALUE...]");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(args[4]));
        // The window stores on disk in the working directory, as Sluice's state_dir.
        props.put(StreamsConfig.STATE_DIR_CONFIG, Path.of("kafka-streams-state").toAbsolutePath().toString());
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        // No record cache: an update per order, as Sluice's emit = "updates". With the cache (10 MiB
        // by default), updates to a window in the cache are merged until it is flushed (at each
        // commit or when full), so fewer results would be written than orders read and the output
        // would never hold one per order.
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        // Commit about every second, as Sluice does.
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // The same producer tuning as Sluice's defaults.
        props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 10);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), 1048576);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "lz4");

        for (int i = 6; i < args.length; i++) {
            String[] kv = args[i].split("=", 2);
            props.put(kv[0], kv[1]);
        }

        Duration grace = Duration.ofMillis(Long.parseLong(args[5]));
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(Arrays.asList(args[2].split(",")),
                        Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()).withTimestampExtractor(new EventTime()))
                .groupByKey(Grouped.with(Serdes.ByteArray(), Serdes.ByteArray()))
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofHours(1), grace))
                .aggregate(() -> new byte[16], (key, value, aggregate) -> add(value, aggregate),
                        Materialized.<byte[], byte[], WindowStore<Bytes, byte[]>>with(Serdes.ByteArray(), Serdes.ByteArray()))
                .toStream()
                .map(WindowedStreams::result)
                .to(args[3], Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch done = new CountDownLatch(1);
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("WindowedStreams: " + e);
            done.countDown();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            System.err.println("WindowedStreams: state " + now);
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) done.countDown();
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close();
            done.countDown();
        }));
        streams.start();
        done.await();
    }
}
