"""`make bench-peers`: Sluice against the pipe's limit and against the peers users would pick
instead, in one run, on one real Apache Kafka broker (SLUICE_TEST_KAFKA, as tests/with-kafka.sh
provides), over the same preloaded seed-000 records.

Systems, each on its own output topic and consumer group:
  limit           Sluice with a pipeline that has no transform (plain consume -> produce)
  sluice-tz       Sluice with the tz normaliser in Wasm, configured like the seed
  kafka-streams   bench/peers/streams/src/TzStreams.java (Kafka Streams 4.3.1 + Jackson)
  pathway         bench/peers/pathway_etl.py (the seed's etl.py logic)
  plain-python    bench/peers/plain_consumer.py (confluent-kafka consume/produce loop)
and, over preloaded orders instead (the "windowed" section):
  sluice-windowed         Sluice with the stateful windowed_aggregate in Wasm: hourly count, sum
                          and average per customer, an update per order
  kafka-streams-windowed  bench/peers/streams/src/WindowedStreams.java, the same aggregation

Each is timed from the moment its process is started until the high watermarks of its output
topic add up to all the records (also reported: from its first output to the last, the steady
rate). Peak RSS is polled from /proc over the process tree. Then: latency from produce to output
at half of Sluice's peak rate for Sluice and Kafka Streams; Sluice at 1, 3 and 6 partitions per
topic; Sluice with 1, 2 and 3 transforms chained; the windowed aggregation, Sluice against Kafka
Streams.

Writes bench/peers/results/peers.json and peers.md. Environment:
  BENCH_PEERS_RECORDS   records to preload (default 1000000)
  BENCH_PEERS_ONLY      comma-separated systems or sections to run (default all; for trying the
                        harness): limit, sluice-tz, kafka-streams, pathway, plain-python, latency,
                        partitions, chain, windowed
  BENCH_PEERS_TIMEOUT   seconds a system may take for all records (default 300)
  BENCH_PEERS_SLUICE    the sluice binary (default target/release/sluice)
  BENCH_PEERS_SLUICE_LOG  Sluice's log filter, into each run's log file (default warn)
For tuning experiments (any of these, or the three above, makes the run an experiment: its
results go to its work folder under .cache/bench-peers, not to bench/peers/results):
  BENCH_PEERS_SLUICE_EXTRA     TOML appended to every Sluice configuration ([kafka.consumer] ...)
  BENCH_PEERS_PIPELINE_EXTRA   keys added to every Sluice [[pipeline]] (batch_size = 8192)
  BENCH_PEERS_STREAMS_PROPS    KEY=VALUE Kafka Streams properties, space-separated
  BENCH_PEERS_JAVA_OPTS        JVM options for Kafka Streams (e.g. a flight recording)
"""

import array
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition, libversion
from importlib.metadata import version as package_version
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = ROOT / ".cache" / "bench-peers"
RESULTS = HERE / "results"
SLUICE = Path(os.environ.get("BENCH_PEERS_SLUICE", ROOT / "target" / "release" / "sluice"))
WASM = ROOT / "target" / "wasm32-wasip2" / "release"
STREAMS = CACHE / "streams"
VENV_PYTHON = CACHE / "venv" / "bin" / "python"
KAFKA_VERSION = "4.3.1"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S.%f %z"

N = int(os.environ.get("BENCH_PEERS_RECORDS", "1000000"))
TIMEOUT = float(os.environ.get("BENCH_PEERS_TIMEOUT", "300"))
ONLY = {s for s in os.environ.get("BENCH_PEERS_ONLY", "").split(",") if s}
BOOTSTRAP = os.environ.get("SLUICE_TEST_KAFKA", "")
RUN_ID = dt.datetime.now().strftime("%Y%m%d%H%M%S")
WORK = CACHE / f"run-{RUN_ID}"
PARTITIONS = 3
CORES = os.cpu_count() or 1

TZ_CONFIG = {"field": "date", "format": DATE_FORMAT, "output_field": "timestamp", "unit": "ms"}
CHAINS = {
    1: [("tz_normaliser", TZ_CONFIG)],
    2: [("tz_normaliser", TZ_CONFIG), ("pii_stripper", {})],
    3: [
        ("tz_normaliser", TZ_CONFIG),
        ("pii_stripper", {}),
        ("enricher", {"table": "servers", "key_field": "message", "fields": "host,region"}),
    ],
}
CHAIN_NAMES = {1: "tz-normaliser", 2: "tz-normaliser, pii-stripper", 3: "tz-normaliser, pii-stripper, enricher"}
TABLE_ENTRIES = 1000

# The windowed aggregation's orders: 10,000 customers, one order a second of event time from
# 2024-01-01T00:00:00Z (as bench/src/e2e.rs makes them).
ORDERS_START_MS = 1_704_067_200_000
CUSTOMERS = 10000
# How long after its end a window still takes orders, for both systems: the whole span of the
# orders' event times. A task's two inputs are consumed independently (in Sluice a worker per
# partition, their batches of up to 1024 orders, about 1.7 hours of a partition's event time,
# taking turns on the task's state), so stream time can run ahead of one input by hours or more
# (with lateness 0, 20,000 orders: Sluice failed orders1's first order at a stream time 5.5 hours
# on, all of orders2's first fetch); with a shorter lateness such orders would be late: failed by
# Sluice (which stops the pipeline, as it has no dead-letter topic) and dropped by Kafka Streams,
# and neither output would reach one result per order.
WINDOW_LATENESS_DAYS = N // 86400 + 1
WINDOWED_CONFIG = {
    "key": "customer_id", "time": "t", "value": "amount", "window": "1h", "emit": "updates",
    "aggregations": "count,sum,avg", "allowed_lateness": f"{WINDOW_LATENESS_DAYS}d",
}
WINDOWED_CHAIN = [("windowed_aggregate", WINDOWED_CONFIG)]


def log(*args):
    print(*args, flush=True)


# ---------------------------------------------------------------- Kafka helpers


_ADMIN = []


def admin():
    # Kept for the whole run: futures fail if their client is destroyed before they resolve.
    if not _ADMIN:
        _ADMIN.append(AdminClient({"bootstrap.servers": BOOTSTRAP}))
    return _ADMIN[0]


def create_topics(names, partitions=PARTITIONS, config=None):
    futures = admin().create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1, config=config or {}) for n in names]
    )
    for name, future in futures.items():
        future.result(30)
    # Wait until the broker serves their metadata with leaders: a client that subscribes before
    # then may be assigned nothing until its next metadata refresh (minutes, for Kafka Streams).
    deadline = time.monotonic() + 60
    while True:
        try:
            meta = admin().list_topics(timeout=10)
        except Exception:  # noqa: BLE001 - a busy broker may time out; try again until the deadline
            if time.monotonic() > deadline:
                raise
            continue
        ready = all(
            n in meta.topics and meta.topics[n].error is None and len(meta.topics[n].partitions) == partitions
            and all(pm.leader >= 0 for pm in meta.topics[n].partitions.values())
            for n in names
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics {names} not ready within 60 s")
        time.sleep(0.1)


def new_producer(**extra):
    settings = {
        "bootstrap.servers": BOOTSTRAP,
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1000000,
        "batch.num.messages": 10000,
    }
    settings.update(extra)
    return Producer(settings)


def send(producer, topic, value, key=None, partition=-1):
    while True:
        try:
            producer.produce(topic, value, key=key, partition=partition)
            return
        except BufferError:
            producer.poll(0.005)


def seed_record(i):
    """The seed-000 record i, as bench/src/main.rs makes them: even ones from New York, odd
    ones from Paris."""
    hour, offset = (10, "-0500") if i % 2 == 0 else (16, "+0100")
    return (
        f'{{"date": "2024-02-05 {hour}:{i // 60 % 60:02}:{i % 60:02}.{i * 7919 % 1000000:06} {offset}", '
        f'"message": "{i}"}}'
    ).encode()


def preload(tz1, tz2, n):
    producer = new_producer()
    for i in range(n):
        send(producer, tz1 if i % 2 == 0 else tz2, seed_record(i))
        if i % 10000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"preloading {tz1}/{tz2}: {left} records not acknowledged")


def order_record(i):
    """Order i: (its customer number, its JSON value)."""
    customer = i * 7919 % CUSTOMERS
    cents = i * 31 % 10000
    amount = str(cents // 100) if cents % 100 == 0 else repr(cents / 100)
    value = f'{{"customer_id": "c{customer}", "t": {ORDERS_START_MS + i * 1000}, "amount": {amount}}}'
    return customer, value.encode()


def preload_orders(orders1, orders2, n):
    """Orders split evenly between the two topics, keyed by customer and on partition customer %
    PARTITIONS of either: co-partitioned, so that a customer's orders meet in one task (Sluice's
    and Kafka Streams' alike) with no repartition."""
    producer = new_producer()
    for i in range(n):
        customer, value = order_record(i)
        send(producer, orders1 if i % 2 == 0 else orders2, value, key=f"c{customer}".encode(),
             partition=customer % PARTITIONS)
        if i % 10000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"preloading {orders1}/{orders2}: {left} records not acknowledged")


class Watcher:
    """Counts the records on a topic from its partitions' high watermarks."""

    def __init__(self):
        self.consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"bench-peers-watch-{RUN_ID}"})
        self.partitions = {}

    def count(self, topic):
        if topic not in self.partitions:
            meta = self.consumer.list_topics(topic, timeout=10)
            self.partitions[topic] = sorted(meta.topics[topic].partitions)
        total = 0
        for p in self.partitions[topic]:
            for attempt in range(50):
                try:
                    _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)
                    break
                except Exception:  # noqa: BLE001 - a new topic's leader may not be known yet
                    if attempt == 49:
                        raise
                    time.sleep(0.1)
            total += max(high, 0)
        return total

    def sample(self, topic):
        """The first record of partition 0, to show what a system writes (the first the broker still
        holds: Kafka Streams' windowed results carry their orders' event times, from 2024, so the
        broker's retention deletes their closed segments)."""
        c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"bench-peers-sample-{RUN_ID}", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest"})
        try:
            c.assign([TopicPartition(topic, 0, 0)])
            m = c.poll(10)
            return m.value().decode(errors="replace") if m is not None and not m.error() else None
        finally:
            c.close()


# ---------------------------------------------------------------- processes and memory


def descendants(pid):
    """pid and every process below it."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return found


def tree_memory_kb(pid):
    """(sum of VmRSS, sum of VmHWM) over the process tree, in KiB."""
    rss = hwm = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
        except OSError:
            pass
    return rss, hwm


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid):
    """User plus system CPU time used so far by the process tree (threads included)."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLOCK_TICKS


def broker_pid():
    d = os.environ.get("SLUICE_BROKER_DIR")
    try:
        return int(Path(d, "broker.pid").read_text().strip()) if d else None
    except (OSError, ValueError):
        return None


def machine_ticks():
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def tail(path, lines=12):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def stop_process(proc):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def run_system(label, cmd, output, n, watcher, env=None, timeout=TIMEOUT):
    """Starts cmd, waits until `output` holds n records; returns the measurements."""
    logfile = WORK / f"{label}.log"
    with open(logfile, "w") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True, cwd=WORK,
        )
    broker = broker_pid()
    broker_cpu = tree_cpu_seconds(broker) if broker else 0
    ticks = machine_ticks()
    first = None
    peak_rss = peak_hwm = 0
    count = 0
    reason = None
    try:
        while True:
            rss, hwm = tree_memory_kb(proc.pid)
            peak_rss, peak_hwm = max(peak_rss, rss), max(peak_hwm, hwm)
            count = watcher.count(output)
            now = time.monotonic()
            if count > 0 and first is None:
                first = now
            if count >= n:
                break
            if proc.poll() is not None:
                reason = f"exited with status {proc.returncode} after {count} of {n} outputs: {tail(logfile)}"
                break
            if now - started > timeout:
                reason = f"timed out after {timeout:.0f} s with {count} of {n} outputs"
                break
            time.sleep(0.02)
        done = time.monotonic()
        cpu = tree_cpu_seconds(proc.pid)
        broker_cpu = tree_cpu_seconds(broker) - broker_cpu if broker else None
        busy, total = machine_ticks()
        machine_busy = (busy - ticks[0]) / max(total - ticks[1], 1)
        rss, hwm = tree_memory_kb(proc.pid)
        peak_rss, peak_hwm = max(peak_rss, rss), max(peak_hwm, hwm)
    finally:
        stop_process(proc)
    result = {
        "status": "ok" if reason is None else "failed",
        "seconds": round(done - started, 3),
        "outputs": count,
        "peak_rss_mb": round(max(peak_rss, peak_hwm) / 1024, 1),
        "cpu_seconds": round(cpu, 2),
        "broker_cpu_seconds": round(broker_cpu, 2) if broker_cpu is not None else None,
        "machine_busy": round(machine_busy, 2),
        "log": str(logfile.relative_to(ROOT)),
    }
    if reason is None:
        result["records_per_s"] = round(n / (done - started))
        result["startup_s"] = round(first - started, 3)
        # From the first output to the last: the rate once running, without process start-up,
        # group join and module compilation.
        result["steady_records_per_s"] = round((n - 1) / max(done - first, 1e-3)) if done > first else None
    else:
        result["reason"] = reason
        if count and done > started:
            result["partial_records_per_s"] = round(count / (done - started))
    return result


# ---------------------------------------------------------------- the systems


def state_disk_mb(folder):
    """The disk space a run's state takes, in MiB (None if it has none); then the folder is
    removed, as it is of no further use (a million orders leave hundreds of MiB)."""
    if not folder.exists():
        return None
    size = sum(f.lstat().st_blocks * 512 for f in folder.rglob("*"))
    shutil.rmtree(folder, ignore_errors=True)
    return round(size / 2**20, 1)


def toml_value(v):
    return json.dumps(v)  # a JSON string is a valid TOML basic string


def sluice_config(name, inputs, output, chain, tables=(), extra=""):
    lines = [
        # Each run its own: a state_dir keeps its pipelines, which would run again in later runs.
        f"state_dir = {toml_value(f'state-{name}')}",
        "[kafka]",
        f'"bootstrap.servers" = {toml_value(BOOTSTRAP)}',
        "",
        "[api]",
        'listen = "127.0.0.1:0"',
        "",
        "[[pipeline]]",
        f"name = {toml_value(name)}",
        f"inputs = [{', '.join(toml_value(t) for t in inputs)}]",
        f"outputs = [{toml_value(output)}]",
        'start = "earliest"',
        extra or os.environ.get("BENCH_PEERS_PIPELINE_EXTRA", ""),  # pipeline keys, for tuning experiments
    ]
    for table_name, topic in tables:
        lines += ["[[pipeline.table]]", f"name = {toml_value(table_name)}", f"topic = {toml_value(topic)}", ""]
    for module, config in chain:
        lines += ["[[pipeline.transform]]", f"module = {toml_value(str(WASM / (module + '.wasm')))}"]
        if config:
            lines.append("config = { " + ", ".join(f"{k} = {toml_value(v)}" for k, v in config.items()) + " }")
        lines.append("")
    # For tuning experiments: TOML appended to every Sluice configuration, e.g.
    # BENCH_PEERS_SLUICE_EXTRA=$'[kafka.consumer]\n"fetch.wait.max.ms" = "10"'
    lines.append(os.environ.get("BENCH_PEERS_SLUICE_EXTRA", ""))
    path = WORK / f"{name}.toml"
    path.write_text("\n".join(lines))
    return path


def guarded(run):
    """A run that raises is reported as failed with the error, and the benchmark goes on."""

    def wrapper(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            return {"status": "failed", "reason": f"harness error: {type(e).__name__}: {e}"}

    return wrapper


@guarded
def run_sluice(label, inputs, output, chain, watcher, n=N, tables=()):
    if not SLUICE.exists():
        return {"status": "failed", "reason": f"{SLUICE} is missing (cargo build --release -p sluice)"}
    for module, _ in chain:
        if not (WASM / f"{module}.wasm").exists():
            return {"status": "failed", "reason": f"{module}.wasm is missing (make wasm)"}
    config = sluice_config(f"{label}-{RUN_ID}", inputs, output, chain, tables)
    cmd, env = sluice_command(config)
    # As on any restart, the modules were seen before: `--check` compiles them into the run's
    # state_dir, where the timed run finds them compiled.
    checked = subprocess.run([*cmd, "--check"], capture_output=True, text=True, cwd=WORK, env={**os.environ, **env})
    if checked.returncode != 0:
        return {"status": "failed", "reason": f"sluice run --check failed: {checked.stderr.strip()[-500:]}"}
    return run_system(label, cmd, output, n, watcher, env=env)


def sluice_command(config):
    """`sluice run` on `config`, and its environment."""
    return [str(SLUICE), "run", "--config", str(config)], {"SLUICE_LOG": os.environ.get("BENCH_PEERS_SLUICE_LOG", "warn")}


def streams_command(app_id, inputs, output, main="TzStreams", args=()):
    """`main` (a class in bench/peers/streams/src) on `inputs`, with `args` after the threads."""
    failed = CACHE / "kafka-streams.failed"
    if failed.exists():
        return None, failed.read_text().strip()
    if not (STREAMS / "classes" / f"{main}.class").exists():
        return None, "not installed (bash bench/peers/setup.sh)"
    java = shutil.which("java")
    if java is None:
        return None, "java not found"
    cmd = [java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", *os.environ.get("BENCH_PEERS_JAVA_OPTS", "").split(), "-cp", f"{STREAMS / 'libs'}/*:{STREAMS / 'classes'}",
           main, BOOTSTRAP, app_id, ",".join(inputs), output, str(CORES), *args]
    cmd += os.environ.get("BENCH_PEERS_STREAMS_PROPS", "").split()
    return cmd, None


@guarded
def run_streams(label, inputs, output, watcher, main="TzStreams", args=()):
    cmd, why = streams_command(f"{label}-{RUN_ID}", inputs, output, main, args)
    if cmd is None:
        return {"status": "failed", "reason": why}
    return run_system(label, cmd, output, N, watcher)


@guarded
def run_pathway(label, inputs, output, watcher):
    failed = CACHE / "pathway.failed"
    if failed.exists():
        return {"status": "failed", "reason": failed.read_text().strip()}
    cmd = [str(VENV_PYTHON), str(HERE / "pathway_etl.py"), BOOTSTRAP, f"{label}-{RUN_ID}", inputs[0], inputs[1], output]
    env = {
        "PATHWAY_THREADS": str(CORES),      # one worker per core, as for the other systems
        "PATHWAY_MONITORING_SERVER": "",    # no telemetry or monitoring endpoint
        "PATHWAY_LICENSE_KEY": "",
    }
    return run_system(label, cmd, output, N, watcher, env=env)


@guarded
def run_plain(label, inputs, output, watcher):
    cmd = [str(VENV_PYTHON), str(HERE / "plain_consumer.py"), BOOTSTRAP, f"{label}-{RUN_ID}", ",".join(inputs), output]
    return run_system(label, cmd, output, N, watcher)


# ---------------------------------------------------------------- latency


@guarded
def latency(label, start_cmd, rate, seconds, watcher):
    """Starts a system on fresh topics, feeds it `rate` records/s for `seconds`, and measures
    each record from its produce call to its output's append on the broker (the output topic
    uses LogAppendTime, so the broker stamps it). The records come from `sluice gen`, whose
    producer (Rust, librdkafka) stamps each with the time of its produce call: a Python producer
    took a core of the two at these rates, and its backlog was most of the figure."""
    tz1, tz2, out = f"lat-{label}-tz1-{RUN_ID}", f"lat-{label}-tz2-{RUN_ID}", f"lat-{label}-out-{RUN_ID}"
    create_topics([tz1, tz2])
    create_topics([out], config={"message.timestamp.type": "LogAppendTime"})
    cmd, env = start_cmd(tz1, tz2, out)
    if cmd is None:
        return {"status": "failed", "reason": env}
    logfile = WORK / f"{label}.log"
    with open(logfile, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, start_new_session=True, cwd=WORK)
    producer = new_producer()
    warm = 1000
    # `sluice gen` runs a second longer: as in `make bench`, its first second is warm-up (its
    # producer finds the partitions' leaders meanwhile, and sends what it owes at once after).
    total = int(rate * (seconds + 1))
    try:
        # Warm up until outputs flow, so start-up is not counted.
        for i in range(warm):
            # Spread over every partition, so that no task waits on an empty one.
            send(producer, tz1 if i % 2 == 0 else tz2, seed_record(i), partition=(i // 2) % PARTITIONS)
        producer.flush(30)
        deadline = time.monotonic() + 120
        while watcher.count(out) < warm:
            if proc.poll() is not None:
                return {"status": "failed", "reason": f"exited with status {proc.returncode}: {tail(logfile)}"}
            if time.monotonic() > deadline:
                return {"status": "failed", "reason": "no output within 120 s of warm-up"}
            time.sleep(0.05)
        # The timed records are numbered from 0 again: they are told from the warm-up by their
        # produce time, and the numbers the warm-up used are left out.
        gen_from_ms = time.time() * 1000
        timed_from_ms = gen_from_ms + 1000
        started = time.monotonic()
        gen = subprocess.run([str(SLUICE), "gen", "--bootstrap-servers", BOOTSTRAP, "--topics", f"{tz1},{tz2}",
                              "--rate", str(rate), "--count", str(total)], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=seconds + 120)
        produce_seconds = time.monotonic() - started
        if gen.returncode != 0:
            return {"status": "failed", "reason": f"sluice gen failed: {gen.stderr.strip()[-500:]}"}
        deadline = time.monotonic() + 120
        while watcher.count(out) < warm + total and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        stop_process(proc)
    message_re = re.compile(rb'"message"\s*:\s*"(\d+)"')

    def read(topics, each):
        reader = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"lat-reader-{label}-{topics[0]}-{RUN_ID}",
                           "auto.offset.reset": "earliest", "enable.auto.commit": False})
        reader.subscribe(topics)
        idle = 0
        while idle < 20:
            batch = reader.consume(10000, 0.5)
            if not batch:
                idle += 1
                continue
            idle = 0
            for m in batch:
                found = None if m.error() else message_re.search(m.value())
                if found:
                    each(int(found.group(1)), m.timestamp()[1])
        reader.close()

    sent_at = array.array("d", [0.0]) * total

    def produced(i, ms):
        if ms >= gen_from_ms and i < total:
            sent_at[i] = ms

    samples, by_second = [], {}

    def appended(i, ms):
        if warm <= i < total and sent_at[i]:
            # The warm-up second is second -1 there.
            by_second.setdefault(int((sent_at[i] - timed_from_ms) // 1000), []).append(ms - sent_at[i])
            if sent_at[i] >= timed_from_ms:
                samples.append(ms - sent_at[i])

    read([tz1, tz2], produced)
    read([out], appended)
    # Where in the run the slow ones were, beside the broker's GC pauses, into the run's folder.
    pauses = broker_gc_pauses()
    p99s = {True: [], False: []}
    with open(WORK / f"{label}-latency-by-second.tsv", "w") as f:
        f.write("second\trecords\tp50_ms\tp99_ms\tmax_ms\tbroker_gc_pause_ms\n")
        for second, values in sorted(by_second.items()):
            values.sort()
            q = lambda x: values[int((len(values) - 1) * x)]
            start = timed_from_ms + second * 1000
            pause = max((length for end, length in pauses if end > start and end - length < start + 1000),
                        default=0.0)
            if 0 <= second < seconds:
                p99s[pause > 0].append(q(0.99))
            f.write(f"{second}\t{len(values)}\t{q(0.5):.0f}\t{q(0.99):.0f}\t{values[-1]:.0f}\t{pause:.0f}\n")
    expected = sum(1 for ms in sent_at[warm:] if ms >= timed_from_ms)
    if len(samples) < expected * 0.99:
        return {"status": "failed", "reason": f"only {len(samples)} of {expected} outputs arrived",
                "rate": round(rate)}
    samples.sort()
    at = lambda q: round(samples[int((len(samples) - 1) * q)], 1)
    median = lambda xs: round(sorted(xs)[len(xs) // 2]) if xs else None
    return {"status": "ok", "rate": round(rate), "achieved_produce_rate": round(total / produce_seconds),
            "records": len(samples), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0),
            "seconds_with_broker_gc_pause": len(p99s[True]),
            "p99_median_of_seconds_with_broker_gc_pause_ms": median(p99s[True]),
            "p99_median_of_other_seconds_ms": median(p99s[False])}


def broker_gc_pauses():
    """The broker JVM's pauses as (end, in ms since the epoch; length in ms), from the gc.log that
    tests/kafka/broker.sh has it write; none without one."""
    try:
        with open(os.path.join(os.environ["SLUICE_BROKER_DIR"], "gc.log")) as f:
            text = f.read()
    except (KeyError, OSError):
        return []
    # [2026-12-06T18:32:11.563+0000][1796581931563ms] GC(0) Pause Young (Normal) (G1 Evacuation Pause) 13M->4M(258M) 6.630ms
    found = (re.match(r"\[[^]]*\]\[(\d+)ms\] .* Pause .* ([\d.]+)ms$", line) for line in text.splitlines())
    return [(float(m.group(1)), float(m.group(2))) for m in found if m]


# ---------------------------------------------------------------- environment


def machine():
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cores": CORES, "memory_gib": round(mem_kb / 1024 / 1024, 1), "cpu": model,
            "kernel": platform.release(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def lock_version(crate):
    text = (ROOT / "Cargo.lock").read_text()
    m = re.search(r'name = "' + re.escape(crate) + r'"\nversion = "([^"]+)"', text)
    return m.group(1) if m else None


def versions():
    def out(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception as e:  # noqa: BLE001
            return f"unknown ({e})"

    pathway_version = None
    try:
        pathway_version = subprocess.run([str(VENV_PYTHON), "-c", "import pathway; print(pathway.__version__)"],
                                         capture_output=True, text=True, timeout=120).stdout.strip() or None
    except Exception:  # noqa: BLE001
        pass
    rdkafka_sys = lock_version("rdkafka-sys") or ""
    return {
        "sluice": out([str(SLUICE), "--version"]).removeprefix("sluice "),
        "wasmtime": lock_version("wasmtime"),
        "librdkafka (sluice)": rdkafka_sys.split("+")[-1] if "+" in rdkafka_sys else rdkafka_sys,
        "apache kafka (broker, kafka-streams)": KAFKA_VERSION,
        "java": out(["java", "-version"]),
        "python": platform.python_version(),
        "pathway": pathway_version,
        "confluent-kafka": package_version("confluent-kafka"),
        "librdkafka (confluent-kafka)": libversion()[0],
    }


# ---------------------------------------------------------------- report


def ratio(a, b):
    return round(a / b, 2) if a and b else None


def fmt_rate(r):
    return f"{r / 1000:.0f}k" if r >= 10000 else f"{r:.0f}" if r else "–"


def markdown(res):
    m = res["machine"]
    lines = [
        f"Sluice against its limit and its peers: {res['records']:,} seed-000 records preloaded on "
        f"`timezone1`/`timezone2` ({PARTITIONS} partitions each), one Apache Kafka {KAFKA_VERSION} broker "
        f"on loopback, each system on its own output topic and consumer group.",
        "",
        f"Run {res['date']} on {m['cores']} cores, {m['memory_gib']} GiB ({m['cpu']}; broker, harness and "
        f"system on the same machine). Reproduce: `{res['command']}`.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items() if v) + ".",
        "",
        "| system | records/s (start to last output) | / limit | steady records/s (first to last output) | / limit | start-up s | CPU s | broker CPU s | machine busy | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    limit = res["systems"].get("limit", {})
    for key, name in SYSTEM_NAMES.items():
        r = res["systems"].get(key)
        if r is None:
            continue
        if r["status"] != "ok":
            partial = f" (partial: {fmt_rate(r['partial_records_per_s'])}/s)" if r.get("partial_records_per_s") else ""
            lines.append(f"| {name} | **failed**: {r['reason'].splitlines()[0][:160]}{partial} | | | | | {r.get('cpu_seconds', '')} | | | {r.get('peak_rss_mb', '')} |")
            continue
        lines.append(
            f"| {name} | {fmt_rate(r['records_per_s'])} | {ratio(r['records_per_s'], limit.get('records_per_s')) or '–'} "
            f"| {fmt_rate(r['steady_records_per_s'])} | {ratio(r['steady_records_per_s'], limit.get('steady_records_per_s')) or '–'} "
            f"| {r['startup_s']:.1f} | {r['cpu_seconds']:.1f} | {r['broker_cpu_seconds'] if r['broker_cpu_seconds'] is not None else '–'} "
            f"| {r['machine_busy']:.0%} | {r['peak_rss_mb']:.0f} |"
        )
    lat = res.get("latency", {})
    if lat:
        lines += ["", "| latency, produce to output | rate | p50 | p99 | max |", "|---|---|---|---|---|"]
        for key, name in (("sluice-tz", "Sluice, tz normaliser"), ("kafka-streams", "Kafka Streams")):
            r = lat.get(key)
            if r is None:
                continue
            if r["status"] != "ok":
                lines.append(f"| {name} | {fmt_rate(r.get('rate', 0))}/s | **failed**: {r['reason'][:160]} | | |")
            else:
                lines.append(f"| {name} | {fmt_rate(r['rate'])}/s | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms | {r['max_ms']:.0f} ms |")
    for title, key, label in (("partitions per input topic", "partitions_scaling", "partitions"),
                              ("transforms chained", "chain", "chain")):
        rows = res.get(key, {})
        if not rows:
            continue
        lines += ["", f"| Sluice, {title} | records/s (start to last output) | steady records/s | CPU s | peak RSS MiB |",
                  "|---|---|---|---|---|"]
        for k, r in rows.items():
            name = f"{k}" if key == "partitions_scaling" else f"{k}: {CHAIN_NAMES[int(k)]}"
            if r["status"] != "ok":
                lines.append(f"| {name} | **failed**: {r['reason'][:160]} | | | |")
            else:
                lines.append(f"| {name} | {fmt_rate(r['records_per_s'])} | {fmt_rate(r['steady_records_per_s'])} | {r['cpu_seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
    windowed = res.get("windowed", {})
    if windowed.get("systems"):
        lines += [
            "",
            f"Windowed aggregation: {res['records']:,} orders preloaded on `orders1`/`orders2` ({PARTITIONS} partitions "
            f"each, keyed and partitioned by customer), hourly tumbling windows per customer on the event time `t` "
            f"(count, sum and average of `amount`, allowed lateness {WINDOWED_CONFIG['allowed_lateness']}), a result "
            f"written per order; state on disk with a changelog topic.",
            "",
            "| windowed aggregation | records/s (start to last output) | steady records/s (first to last output) | start-up s | CPU s | broker CPU s | machine busy | peak RSS MiB | state on disk MiB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for key, name in WINDOWED_NAMES.items():
            r = windowed["systems"].get(key)
            if r is None:
                continue
            if r["status"] != "ok":
                partial = f" (partial: {fmt_rate(r['partial_records_per_s'])}/s)" if r.get("partial_records_per_s") else ""
                lines.append(f"| {name} | **failed**: {r['reason'].splitlines()[0][:160]}{partial} | | | {r.get('cpu_seconds', '')} | | | {r.get('peak_rss_mb', '')} | |")
                continue
            disk = r.get("state_disk_mb")
            lines.append(
                f"| {name} | {fmt_rate(r['records_per_s'])} | {fmt_rate(r['steady_records_per_s'])} | {r['startup_s']:.1f} "
                f"| {r['cpu_seconds']:.1f} | {r['broker_cpu_seconds'] if r['broker_cpu_seconds'] is not None else '–'} "
                f"| {r['machine_busy']:.0%} | {r['peak_rss_mb']:.0f} | {f'{disk:.0f}' if disk is not None else '–'} |"
            )
        q = windowed.get("sluice_over_kafka_streams")
        if q:
            x = lambda v: f"{v:.2f}x" if v is not None else "–"
            lines.append(f"| Sluice / Kafka Streams | {x(q['records_per_s'])} | {x(q['steady_records_per_s'])} | "
                         f"| {x(q['cpu_seconds'])} | | | {x(q['peak_rss_mb'])} | {x(q.get('state_disk_mb'))} |")
    lines += ["", "| target | met? |", "|---|---|"]
    for t in res["targets"]:
        lines.append(f"| {t['target']} | {t['verdict']} |")
    lines += ["", "| performance target | value | target | |", "|---|---|---|---|"]
    for t in res.get("performance_targets", []):
        value = "–" if t["value"] is None else f"{t['value']:g}"
        lines.append(f"| {t['figure']} | {value} | {t['target']} | {'met' if t['met'] else '**missed**'} |")
    lines += ["", "Notes: " + " ".join(res["notes"]), ""]
    return "\n".join(lines)


SYSTEM_NAMES = {
    "limit": "limit: Sluice, no transform",
    "sluice-tz": "Sluice, tz normaliser (Wasm)",
    "kafka-streams": f"Kafka Streams {KAFKA_VERSION}",
    "pathway": "Pathway",
    "plain-python": "plain Python (confluent-kafka)",
}
WINDOWED_NAMES = {
    "sluice-windowed": "Sluice, windowed_aggregate (Wasm)",
    "kafka-streams-windowed": f"Kafka Streams {KAFKA_VERSION}",
}


def targets(res):
    s = res["systems"]
    out = []

    def rate(key, field, systems=s):
        r = systems.get(key, {})
        return r.get(field) if r.get("status") == "ok" else None

    def check(text, fn):
        verdicts = []
        for field, what in (("records_per_s", "start to last output"), ("steady_records_per_s", "steady")):
            v = fn(field)
            verdicts.append(f"{what}: {v}")
        out.append({"target": text, "verdict": "; ".join(verdicts)})

    def at_least(a, b, factor, field, systems=s):
        x, y = rate(a, field, systems), rate(b, field, systems)
        if x is None or y is None:
            missing = a if x is None else b
            if not missing.startswith("sluice-") and systems.get(missing, {}).get("status") == "failed":
                return f"cannot compare ({missing} failed)"
            return "cannot compare"
        return f"{'met' if x >= factor * y else '**missed**'} ({x / y:.2f}x)"

    def cpu_note(peer, sluice="sluice-tz", systems=s):
        a, b = systems.get(sluice, {}), systems.get(peer, {})
        if a.get("status") == "ok" and b.get("status") == "ok" and a.get("cpu_seconds"):
            return f" CPU used for the same records: {peer} {b['cpu_seconds'] / a['cpu_seconds']:.1f}x Sluice's."
        return ""

    if s:
        check("Sluice (tz) at least 0.8 of the limit", lambda f: at_least("sluice-tz", "limit", 0.8, f))
        check("Sluice (tz) ahead of Kafka Streams", lambda f: at_least("sluice-tz", "kafka-streams", 1.0, f))
        check("Sluice (tz) at least 5x Pathway", lambda f: at_least("sluice-tz", "pathway", 5.0, f))
        check("Sluice (tz) at least 5x plain Python", lambda f: at_least("sluice-tz", "plain-python", 5.0, f))
        for entry, peer in zip(out[1:], ("kafka-streams", "pathway", "plain-python")):
            entry["verdict"] += "." + cpu_note(peer)
    w = res.get("windowed", {}).get("systems", {})
    if w:
        check("Sluice (windowed) ahead of Kafka Streams (windowed)",
              lambda f: at_least("sluice-windowed", "kafka-streams-windowed", 1.0, f, w))
        out[-1]["verdict"] += "." + cpu_note("kafka-streams-windowed", "sluice-windowed", w)
    return out


def performance_targets(res):
    """The speed and memory targets this benchmark measures, each with its value and whether it is
    met; kept with `make bench`'s in bench/results/latest.json."""
    s, chain, lat = res["systems"], res.get("chain", {}), res.get("latency", {})

    def ok(r):
        return r if r and r.get("status") == "ok" else {}

    def ratio_of(a, b, field="records_per_s"):
        x, y = ok(a).get(field), ok(b).get(field)
        return round(x / y, 3) if x and y else None

    tz = s.get("sluice-tz")
    rows = [
        ("tz pipeline / no-transform limit, start to last output", ratio_of(tz, s.get("limit")), ">=", 0.9),
        ("three chained transforms / one, start to last output", ratio_of(chain.get("3"), chain.get("1")), ">=", 0.7),
        ("peak RSS of the tz pipeline, MiB", ok(tz).get("peak_rss_mb"), "<=", 200),
        ("Sluice (tz) / Pathway, start to last output", ratio_of(tz, s.get("pathway")), ">=", 5),
        ("Sluice (tz) / Kafka Streams, start to last output", ratio_of(tz, s.get("kafka-streams")), ">=", 5),
        ("p99 produce to output at half the tz rate, ms", ok(lat.get("sluice-tz")).get("p99_ms"), "<=", 50),
    ]
    out = []
    for figure, value, op, bound in rows:
        met = value is not None and (value >= bound if op == ">=" else value <= bound)
        out.append({"figure": figure, "value": value, "target": f"{'at least' if op == '>=' else 'at most'} {bound}",
                    "met": met})
    return out


def save_latest(res):
    """Replaces the `peers` section of bench/results/latest.json (`make bench` keeps its own)."""
    path = ROOT / "bench" / "results" / "latest.json"
    try:
        latest = json.loads(path.read_text())
    except (OSError, ValueError):
        latest = {}
    latest["peers"] = {"run_at": res["date"], "machine": res["machine"], "targets": res["performance_targets"],
                       "results": {k: res[k] for k in ("systems", "latency", "partitions_scaling", "chain", "windowed")}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(latest, indent=2) + "\n")
    return path


# ---------------------------------------------------------------- main


def wanted(key):
    return not ONLY or key in ONLY


def best(runs):
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return runs[-1]
    chosen = dict(max(ok, key=lambda r: r["records_per_s"]))
    chosen["steady_records_per_s"] = max(r["steady_records_per_s"] or 0 for r in ok)
    chosen["runs"] = [{k: r.get(k) for k in ("records_per_s", "steady_records_per_s", "cpu_seconds", "broker_cpu_seconds", "machine_busy", "peak_rss_mb")} for r in ok]
    chosen["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    chosen["cpu_seconds"] = min(r["cpu_seconds"] for r in ok)
    return chosen


def main():
    if not BOOTSTRAP:
        sys.exit("harness.py: SLUICE_TEST_KAFKA is not set (run through tests/with-kafka.sh)")
    WORK.mkdir(parents=True, exist_ok=True)
    wall = time.monotonic()
    res = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "make bench-peers",
        "records": N,
        "partitions": None,
        "machine": machine(),
        "versions": versions(),
        "workload": {
            "inputs": "timezone1 (New York, -0500) and timezone2 (Paris, +0100), records split evenly",
            "record": seed_record(0).decode(),
            "tz_normaliser_config": TZ_CONFIG,
            "windowed": {
                "inputs": f"orders1 and orders2, orders split evenly, keyed by customer_id and on partition customer % "
                          f"{PARTITIONS} (co-partitioned)",
                "record": order_record(0)[1].decode(),
                "windowed_aggregate_config": WINDOWED_CONFIG,
                "kafka_streams": f"groupByKey, TimeWindows.ofSizeAndGrace(1 h, {WINDOW_LATENESS_DAYS} d), aggregate "
                                 "(count, sum) in a RocksDB window store with its changelog, no record cache",
            },
        },
        "systems": {},
        "latency": {},
        "partitions_scaling": {},
        "chain": {},
        "windowed": {},
    }
    watcher = Watcher()

    topics = {p: (f"tz1-p{p}-{RUN_ID}", f"tz2-p{p}-{RUN_ID}") for p in (1, 3, 6)}
    log(f"bench-peers: broker {BOOTSTRAP}, {N:,} records, work dir {WORK.relative_to(ROOT)}")
    # The seed records, for every section but the windowed aggregation (which has its orders).
    seed_wanted = any(wanted(k) for k in ("limit", "sluice-tz", "kafka-streams", "pathway", "plain-python",
                                          "latency", "partitions", "chain"))
    for p, (a, b) in topics.items():
        if not seed_wanted or (p != PARTITIONS and not (wanted("partitions"))):
            continue
        create_topics([a, b], partitions=p)
        t = time.monotonic()
        preload(a, b, N)
        log(f"  preloaded {N:,} records on {p} partition(s) per topic in {time.monotonic() - t:.1f} s")
    inputs = topics[PARTITIONS]

    def output(label, partitions=PARTITIONS):
        name = f"out-{label}-{RUN_ID}"
        try:
            create_topics([name], partitions=partitions)
        except Exception as e:  # noqa: BLE001 - the run then fails and says why
            log(f"  creating {name}: {e}")
        return name

    def report(key, r):
        if r["status"] == "ok":
            log(f"  {key:<28} {r['records_per_s']:>9,} records/s from start, {r['steady_records_per_s'] or 0:>9,} steady, "
                f"start-up {r['startup_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MiB, CPU {r['cpu_seconds']:.1f} s")
        else:
            log(f"  {key:<28} FAILED: {r['reason']}")

    # The limit and Sluice with the tz normaliser, alternately, twice each; best run kept.
    runs = {"limit": [], "sluice-tz": []}
    for round_ in range(2):
        for key, chain in (("limit", []), ("sluice-tz", CHAINS[1])):
            if not wanted(key):
                continue
            label = f"{key}-{round_}"
            r = run_sluice(label, inputs, output(label), chain, watcher)
            report(label, r)
            runs[key].append(r)
    for key, rs in runs.items():
        if rs:
            res["systems"][key] = best(rs)

    if wanted("kafka-streams"):
        rs = []
        for round_ in range(2):
            label = f"kafka-streams-{round_}"
            r = run_streams(label, inputs, output(label), watcher)
            report(label, r)
            rs.append(r)
            if r["status"] != "ok":
                break
        res["systems"]["kafka-streams"] = best(rs)
    for key, run in (("pathway", run_pathway), ("plain-python", run_plain)):
        if wanted(key):
            r = run(key, inputs, output(key), watcher)
            report(key, r)
            res["systems"][key] = r

    # Latency at half of Sluice's peak rate (the steady tz rate), for Sluice and Kafka Streams.
    tz = res["systems"].get("sluice-tz", {})
    if tz.get("status") == "ok" and wanted("latency"):
        rate = tz["steady_records_per_s"] / 2
        seconds = 10

        def sluice_cmd(a, b, out):
            return sluice_command(sluice_config(f"lat-sluice-{RUN_ID}", [a, b], out, CHAINS[1]))

        def streams_cmd(a, b, out):
            cmd, why = streams_command(f"lat-streams-{RUN_ID}", [a, b], out)
            return (cmd, None) if cmd else (None, why)

        for key, fn in (("sluice-tz", sluice_cmd), ("kafka-streams", streams_cmd)):
            r = latency(key, fn, rate, seconds, watcher)
            r.setdefault("rate", round(rate))
            res["latency"][key] = r
            if r["status"] == "ok":
                log(f"  latency {key:<20} at {r['rate']:,}/s (produced at {r['achieved_produce_rate']:,}/s): "
                    f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms; "
                    f"broker GC pauses in {r['seconds_with_broker_gc_pause']} of {seconds} seconds, median p99 "
                    f"of those {r['p99_median_of_seconds_with_broker_gc_pause_ms']} ms, "
                    f"of the others {r['p99_median_of_other_seconds_ms']} ms")
            else:
                log(f"  latency {key:<20} FAILED: {r['reason']}")

    # Scaling: partitions per input topic (3 is the tz run above), and transforms chained (1 is
    # the tz run above).
    if wanted("partitions"):
        for p in (1, 3, 6):
            if p == PARTITIONS:
                res["partitions_scaling"][str(p)] = dict(tz, note="the tz run above")
                continue
            label = f"sluice-tz-p{p}"
            r = run_sluice(label, topics[p], output(label, p), CHAINS[1], watcher)
            report(label, r)
            res["partitions_scaling"][str(p)] = r
    if wanted("chain"):
        table_topic = f"servers-{RUN_ID}"
        create_topics([table_topic], partitions=1)
        producer = new_producer()
        for k in range(TABLE_ENTRIES):
            value = json.dumps({"host": f"srv-{k % 40:02}", "region": "us-east" if k % 2 == 0 else "eu-west"})
            send(producer, table_topic, value.encode(), key=str(k).encode())
        producer.flush(30)
        for length in (1, 2, 3):
            if length == 1:
                res["chain"]["1"] = dict(tz, note="the tz run above")
                continue
            label = f"sluice-chain{length}"
            tables = [("servers", table_topic)] if length == 3 else ()
            r = run_sluice(label, inputs, output(label), CHAINS[length], watcher, tables=tables)
            report(label, r)
            res["chain"][str(length)] = r

    # The windowed aggregation: Sluice's windowed_aggregate and Kafka Streams' windowed aggregate
    # over the same orders, alternately, twice each (a system that fails is not run again); best
    # run kept.
    if wanted("windowed"):
        orders = (f"orders1-{RUN_ID}", f"orders2-{RUN_ID}")
        create_topics(list(orders))
        t = time.monotonic()
        preload_orders(*orders, N)
        log(f"  preloaded {N:,} orders on {PARTITIONS} partitions per topic in {time.monotonic() - t:.1f} s")
        grace_ms = str(WINDOW_LATENESS_DAYS * 86400 * 1000)
        runs = {"sluice-windowed": [], "kafka-streams-windowed": []}
        for round_ in range(2):
            for key, rs in runs.items():
                if rs and rs[-1]["status"] != "ok":
                    continue
                label = f"{key}-{round_}"
                if key == "sluice-windowed":
                    r = run_sluice(label, orders, output(label), WINDOWED_CHAIN, watcher)
                else:
                    r = run_streams(label, orders, output(label), watcher, main="WindowedStreams", args=[grace_ms])
                # Sluice's state_dir and Kafka Streams' state.dir are in the work folder.
                state = (WORK / f"state-{label}-{RUN_ID}" / "state" if key == "sluice-windowed" else WORK / "kafka-streams-state")
                r["state_disk_mb"] = state_disk_mb(state / f"{label}-{RUN_ID}")
                report(label, r)
                rs.append(r)
        systems = {key: best(rs) for key, rs in runs.items()}
        res["windowed"]["systems"] = systems
        a, b = systems["sluice-windowed"], systems["kafka-streams-windowed"]
        if a["status"] == "ok" and b["status"] == "ok":
            res["windowed"]["sluice_over_kafka_streams"] = {
                f: ratio(a.get(f), b.get(f))
                for f in ("records_per_s", "steady_records_per_s", "cpu_seconds", "peak_rss_mb", "state_disk_mb")
            }

    # What each system wrote: its first output record.
    for key, r in res["systems"].items():
        if r.get("status") == "ok":
            label = f"{key}-0" if key in ("limit", "sluice-tz", "kafka-streams") else key
            r["sample_output"] = watcher.sample(f"out-{label}-{RUN_ID}")
    for key, r in res["windowed"].get("systems", {}).items():
        if r.get("status") == "ok":
            r["sample_output"] = watcher.sample(f"out-{key}-0-{RUN_ID}")

    res["partitions"] = PARTITIONS
    res["targets"] = targets(res)
    res["performance_targets"] = performance_targets(res)
    res["wall_seconds"] = round(time.monotonic() - wall)
    res["notes"] = [
        "Records/s from start: all records divided by the time from starting the system's process until the high "
        "watermarks of its output topic add up to all of them; this includes process start-up, group join and, for "
        "Sluice, loading its Wasm modules, compiled into its state_dir by a `sluice run --check` just before (as at "
        "any restart: a module seen before is not compiled again). Steady: from its first output to its last.",
        "Limit, Sluice and Kafka Streams: best of two runs (limit and tz alternating; peak RSS the higher, CPU the lower); Pathway, plain Python, partitions and chains: one run.",
        f"Kafka Streams: {CORES} stream threads, at-least-once, commit every 1 s, producer linger 10 ms, "
        "batch 1 MiB, lz4 (Sluice's defaults), JVM -Xmx1g; Pathway: PATHWAY_THREADS="
        f"{CORES}; plain Python: one process, auto-commit, the same producer tuning.",
        "Peak RSS: the sum of VmHWM over the system's process tree (polled every ~20 ms). CPU s: user plus system "
        "time of the process tree from start to the last output (less sensitive than records/s to other load on a "
        "shared machine); broker CPU s: the broker's over the same time; machine busy: the share of all cores' time "
        "not idle over the same time (the broker, the harness and anything else on the machine included).",
        "Latency: a fresh pipeline per system, 1000 warm-up records, then records produced by `sluice gen` "
        "(librdkafka, 5 ms linger) at the given rate for 11 s, the first second warm-up, as in `make bench`; "
        "each record of the last 10 s is timed from its produce call (its "
        "CreateTime) to its output's append on the broker (LogAppendTime), the producer's linger included.",
        f"Chain of 3: the enricher joins on `message` with a {TABLE_ENTRIES}-entry table (a LEFT JOIN: most "
        "records find no entry and get nulls).",
        "Windowed aggregation: best of two runs each (Sluice and Kafka Streams alternating), at-least-once, a result "
        "per order (Sluice's emit = \"updates\"; Kafka Streams without its record cache, statestore.cache.max.bytes = 0, "
        f"which would otherwise merge updates). Sluice: windowed_aggregate with {json.dumps(WINDOWED_CONFIG)}, state on "
        "disk under state_dir and a changelog topic; Kafka Streams: bench/peers/streams/src/WindowedStreams.java, "
        f"{CORES} stream threads, a RocksDB window store with its changelog, the event time from `t` "
        "by a TimestampExtractor, the same commit and producer settings as above. State on disk: the run's state "
        "folder when it ended (then removed). Allowed lateness (grace) "
        f"{WINDOW_LATENESS_DAYS} d, the orders' whole event-time span, in both: a task's two inputs are consumed "
        "independently, so its stream time can run hours ahead of one of them, and with less an input's orders could "
        "be late (failed by Sluice, dropped by Kafka Streams) and the outputs would not reach one per order.",
    ]
    # Only a full run with the defaults replaces the published results; an experiment (a subset,
    # another record count, tuning overrides) writes into its work folder.
    experiment = [k for k in ("BENCH_PEERS_ONLY", "BENCH_PEERS_RECORDS", "BENCH_PEERS_SLUICE", "BENCH_PEERS_SLUICE_EXTRA",
                              "BENCH_PEERS_PIPELINE_EXTRA", "BENCH_PEERS_STREAMS_PROPS", "BENCH_PEERS_JAVA_OPTS")
                  if os.environ.get(k)]
    if experiment:
        res["experiment"] = {k: os.environ[k] for k in experiment}
    folder = WORK if experiment else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "peers.json").write_text(json.dumps(res, indent=2) + "\n")
    (folder / "peers.md").write_text(markdown(res))
    if not experiment:
        log(f"bench-peers: targets kept in {save_latest(res).relative_to(ROOT)}")
    log("")
    log(markdown(res))
    log(f"bench-peers: wrote {(folder / 'peers.json').relative_to(ROOT)} and {(folder / 'peers.md').relative_to(ROOT)} "
        f"in {res['wall_seconds']} s" + (f" (an experiment: {', '.join(experiment)})" if experiment else ""))


if __name__ == "__main__":
    main()
