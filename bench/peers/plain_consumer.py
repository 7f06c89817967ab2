"""The seed-000 ETL as a plain confluent-kafka consumer/producer loop, the way most tutorials
start (the approach of seed 003), written for Sluice's peer benchmark (bench/peers).

    python plain_consumer.py BOOTSTRAP GROUP INPUT[,INPUT...] OUTPUT
"""

import json
import signal
import sys
from datetime import datetime, timedelta, timezone

from confluent_kafka import Consumer, Producer

DATE_FORMAT = "%Y-%m-%d %H:%M:%S.%f %z"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)


def convert(value: bytes) -> bytes:
    record = json.loads(value)
    instant = datetime.strptime(record.pop("date"), DATE_FORMAT)
    millis = (instant - EPOCH) // MICROSECOND / 1000  # exact to the microsecond
    return json.dumps({"timestamp": millis, **record}).encode()


def main() -> None:
    bootstrap, group, inputs, output = sys.argv[1:5]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    # The same producer tuning as Sluice's defaults.
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 10,
            "compression.type": "lz4",
            "batch.size": 1048576,
            "queue.buffering.max.messages": 500000,
        }
    )
    running = True

    def stop(*_):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    consumer.subscribe(inputs.split(","))
    while running:
        for message in consumer.consume(num_messages=1000, timeout=0.1):
            if message.error():
                print(f"plain_consumer: {message.error()}", file=sys.stderr)
                continue
            while True:
                try:
                    producer.produce(output, convert(message.value()), key=message.key())
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)
    producer.flush(30)
    consumer.close()


if __name__ == "__main__":
    main()
