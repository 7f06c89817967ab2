// The seed-000 ETL as a Kafka Streams application, written for Sluice's peer benchmark
// (bench/peers): reads JSON records {"date": "2024-02-05 10:01:52.884548 -0500", "message": ...}
// from the input topics, replaces `date` by `timestamp`, milliseconds since the Unix epoch (a
// fraction keeps the microseconds), and writes them to the output topic.
//
//   java -cp 'LIBS/*:CLASSES' TzStreams BOOTSTRAP APPLICATION_ID INPUT[,INPUT...] OUTPUT [THREADS [KEY=VALUE...]]
//
// KEY=VALUE pairs override the Streams properties below (for tuning experiments).

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.math.BigDecimal;
import java.nio.file.Files;
import java.time.OffsetDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeFormatterBuilder;
import java.time.temporal.ChronoField;
import java.util.Arrays;
import java.util.Iterator;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;

public final class TzStreams {
    // Python's "%Y-%m-%d %H:%M:%S.%f %z": 1 to 9 fraction digits, an offset such as -0500.
    private static final DateTimeFormatter FORMAT = new DateTimeFormatterBuilder()
            .appendPattern("uuuu-MM-dd HH:mm:ss")
            .appendFraction(ChronoField.NANO_OF_SECOND, 1, 9, true)
            .appendLiteral(' ')
            .appendOffset("+HHMM", "+0000")
            .toFormatter();

    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonGenerator.Feature.WRITE_BIGDECIMAL_AS_PLAIN);

    /** The record with `date` replaced in place by `timestamp` in epoch milliseconds. */
    static byte[] convert(byte[] value) {
        try {
            JsonNode input = JSON.readTree(value);
            ObjectNode output = JSON.createObjectNode();
            Iterator<Map.Entry<String, JsonNode>> fields = input.fields();
            while (fields.hasNext()) {
                Map.Entry<String, JsonNode> field = fields.next();
                if (field.getKey().equals("date")) {
                    OffsetDateTime at = OffsetDateTime.parse(field.getValue().asText(), FORMAT);
                    long nanos = at.toEpochSecond() * 1_000_000_000L + at.getNano();
                    output.put("timestamp", BigDecimal.valueOf(nanos, 6).stripTrailingZeros());
                } else {
                    output.set(field.getKey(), field.getValue());
                }
            }
            return JSON.writeValueAsBytes(output);
        } catch (Exception e) {
            throw new RuntimeException("cannot convert record: " + e.getMessage(), e);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: TzStreams BOOTSTRAP APPLICATION_ID INPUT[,INPUT...] OUTPUT [THREADS]");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, args.length > 4 ? Integer.parseInt(args[4]) : 1);
        props.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("tz-streams").toString());
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        // Commit about every second, as Sluice does.
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // The same producer tuning as Sluice's defaults.
        props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 10);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), 1048576);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "lz4");

        for (int i = 5; i < args.length; i++) {
            String[] kv = args[i].split("=", 2);
            props.put(kv[0], kv[1]);
        }

        StreamsBuilder builder = new StreamsBuilder();
        builder.<byte[], byte[]>stream(Arrays.asList(args[2].split(",")))
                .mapValues(TzStreams::convert)
                .to(args[3]);

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch done = new CountDownLatch(1);
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("TzStreams: " + e);
            done.countDown();
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            System.err.println("TzStreams: state " + now);
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
