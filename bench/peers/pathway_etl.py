"""The seed-000 ETL with Pathway, written for Sluice's peer benchmark (bench/peers).

Two Kafka inputs, one per server location, carry JSON records such as
{"date": "2024-02-05 10:01:52.884548 -0500", "message": "7"}. Each date is parsed with its UTC
offset and turned into milliseconds since the Unix epoch; both streams are merged and written as
JSON to one output topic.

    python pathway_etl.py BOOTSTRAP GROUP INPUT1 INPUT2 OUTPUT
"""

import sys

import pathway as pw

DATE_FORMAT = "%Y-%m-%d %H:%M:%S.%f %z"


class LogLine(pw.Schema):
    date: str
    message: str


def epoch_millis(lines: pw.Table) -> pw.Table:
    parsed = lines.select(
        instant=pw.this.date.dt.strptime(fmt=DATE_FORMAT, contains_timezone=True),
        message=pw.this.message,
    )
    return parsed.select(
        timestamp=pw.this.instant.dt.timestamp(unit="ms"),
        message=pw.this.message,
    )


def main() -> None:
    bootstrap, group, first, second, output = sys.argv[1:6]
    kafka = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "plaintext",
        "group.id": group,
        "session.timeout.ms": "6000",
        "auto.offset.reset": "earliest",
    }
    streams = [
        epoch_millis(
            pw.io.kafka.read(kafka, topic=topic, format="json", schema=LogLine, autocommit_duration_ms=100)
        )
        for topic in (first, second)
    ]
    merged = streams[0].concat_reindex(streams[1])
    pw.io.kafka.write(merged, kafka, topic_name=output, format="json")
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)


if __name__ == "__main__":
    main()
