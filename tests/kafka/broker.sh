#!/usr/bin/env bash
# A real single-node Apache Kafka cluster for Sluice's tests, bound to 127.0.0.1 only: one KRaft
# controller JVM and one broker JVM, as production clusters run them.
#
# Why two processes: a combined broker+controller killed and started again comes back with its
# old registration alive for broker.session.timeout.ms, takes back its partitions, then is fenced
# (every leader -1 for a moment); Kafka 4.3.1's transaction coordinator, sending the markers of a
# commit that was under way at the crash in that moment, skips the leaderless partitions ("these
# partitions are likely deleted already and hence can be skipped") and records the commit as
# complete. The transaction then stays open for good in those partitions: outputs that
# read_committed readers never get past, and a group's offsets that never become stable. Here a
# crash-restart kills the broker alone, waits until the controller has fenced it, and only then
# starts it: it comes back fenced, and takes its partitions once registered anew.
#
# Kafka is assembled from Maven Central jars (the apache.org tarballs are not
# reachable from our machines), cached in <repo>/.cache/kafka/<version>/libs.
#
#   broker.sh install                     fetch the jars once (no-op afterwards)
#   broker.sh start [DIR]                 fresh broker; prints "127.0.0.1:PORT"
#   broker.sh stop [DIR]                  stop it (fine if it is not running); keeps its data
#   broker.sh resume [DIR]                start a stopped broker again on the same data and port
#   broker.sh restart [DIR]               stop, then resume (a broker restart, as in production)
#   broker.sh crash-restart [DIR]         SIGKILL the broker, then resume (a broker crash)
#   broker.sh topic-create NAME PARTS [DIR]  create a topic unless it exists
#   broker.sh deny-transactions USER [DIR]   deny USER every transactional id (an ACL)
#   broker.sh transactions [DIR]          the broker's open and hanging transactions (diagnostics)
#
# DIR defaults to <repo>/.cache/kafka/run and is wiped by every start (not by resume). It holds
# server.properties, data/, broker.log, gc.log (the broker JVM's pauses, which `make bench` lines
# up with its latency), broker.pid and bootstrap (the address), and the
# controller's controller.properties, controller-data/, controller.log and controller.pid.
#
# Environment:
#   SLUICE_BROKER_PORT           broker port (default: 19092, or the next free one)
#   SLUICE_BROKER_START_TIMEOUT  seconds to wait for the broker (default 90, also for resume)
#   SLUICE_BROKER_SASL_USER      at start, USER:PASSWORD: adds a SASL_PLAINTEXT (PLAIN) listener
#                                for that user, written to DIR/sasl-bootstrap, and ACL checks
#                                (everything is allowed until an ACL says otherwise; the
#                                PLAINTEXT listener's anonymous user may do anything)
#   SLUICE_BROKER_JVM_OPTIONS    the broker JVM's heap and collector options, instead of the tests'
#                                small heap (for benchmark experiments)
#   SLUICE_BROKER_PROPERTIES     lines added to the broker's server.properties (a key given again
#                                there wins), e.g. log.segment.bytes=1073741824
#   JAVA                        java binary (default: java on PATH)
set -euo pipefail

KAFKA_VERSION=4.3.1 # keep in step with kafka.version in pom.xml

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=$ROOT/.cache/kafka
KAFKA_HOME=$CACHE/$KAFKA_VERSION
LIBS=$KAFKA_HOME/libs
DEFAULT_DIR=$CACHE/run
JAVA=${JAVA:-java}
# The broker's heap and collector for tests: small, as their data is.
TEST_BROKER_JVM_OPTIONS="-Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent"
# Marks a directory as ours, so `start` never wipes anything else.
STATE_MARK=.sluice-kafka-state

die() {
	echo "broker.sh: $*" >&2
	exit 1
}

# Options for short-lived CLI tools: start fast, log only warnings.
tool_java() {
	"$JAVA" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto -Xmx256m \
		-Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$HERE/log4j2.yaml" -Dsluice.kafka.loglevel=WARN \
		-cp "$LIBS/*" "$@"
}

# ---------------------------------------------------------------- install

pom_hash() { sha256sum "$HERE/pom.xml" | cut -d' ' -f1; }

installed() {
	# The marker holds the pom's hash: editing pom.xml triggers a reinstall.
	[[ -f $KAFKA_HOME/.installed && $(<"$KAFKA_HOME/.installed") == "$(pom_hash)" ]]
}

cmd_install() {
	installed && return 0
	command -v mvn >/dev/null || die "mvn not found (bash tests/setup.sh installs it)"
	command -v "$JAVA" >/dev/null || die "java not found (bash tests/setup.sh installs it)"
	mkdir -p "$KAFKA_HOME"
	# Serialise concurrent installs (e.g. parallel test processes).
	if command -v flock >/dev/null; then
		exec 9>"$CACHE/install.lock"
		flock 9
		installed && return 0
	fi
	local log=$CACHE/install.log tmp=$KAFKA_HOME/libs.tmp
	rm -rf "$tmp"
	# Runtime scope = exactly what a Kafka distribution's libs/ needs.
	if ! mvn -B -ntp -Dstyle.color=never -f "$HERE/pom.xml" \
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
		>"$log" 2>&1; then
		# (Debian's mvn emits stray colour resets even in batch mode.)
		tail -n 40 "$log" | sed 's/\x1b\[[0-9;]*m//g' >&2
		die "installing Kafka $KAFKA_VERSION from Maven Central failed (full log: $log)"
	fi
	[[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] ||
		die "maven succeeded but kafka_2.13-$KAFKA_VERSION.jar is missing (see $log)"
	rm -rf "$LIBS"
	mv "$tmp" "$LIBS"
	pom_hash >"$KAFKA_HOME/.installed"
	echo "broker.sh: Kafka $KAFKA_VERSION installed ($(find "$LIBS" -name '*.jar' | wc -l) jars)" >&2
}

# ---------------------------------------------------------------- helpers

state_dir() {
	local d=${1:-${SLUICE_BROKER_DIR:-$DEFAULT_DIR}}
	[[ $d == /* ]] || d=$PWD/$d
	echo "${d%/}"
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_busy() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True if a broker state dir under the cache holds port $1 (its broker may be down for a
# restart, and must get its port back).
port_reserved() {
	grep -qsE "127\.0\.0\.1:$1(,|$)" "$CACHE"/*/server.properties "$CACHE"/*/controller.properties
}

# First free port >= $1, skipping $2 (the port already picked).
free_port_from() {
	local p=$1
	while ((p < 65535)); do
		if [[ $p != "${2:-}" ]] && ! port_busy "$p" && ! port_reserved "$p"; then
			echo "$p"
			return 0
		fi
		p=$((p + 1))
	done
	die "no free port found from $1"
}

# Kafka cluster ids are 16 random bytes in unpadded base64url (Uuid.toString).
# Made here rather than with `StorageTool random-uuid` to save a JVM start;
# like Kafka we avoid a leading '-', which CLI parsers take for an option.
new_cluster_id() {
	local id
	while :; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
		[[ $id != -* ]] && break
	done
	echo "$id"
}

# The pid in DIR/NAME.pid (NAME: broker, by default, or controller) if it is alive and really our
# Kafka JVM (pids get reused, and we must never signal somebody else's process).
jvm_pid() {
	local pidfile=$1/${2:-broker}.pid pid
	[[ -f $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	if [[ -r /proc/$pid/cmdline ]]; then
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka' || return 1
	fi
	echo "$pid"
}

# Stops the broker with SIGNAL (TERM: a controlled shutdown, which needs the controller up), then
# the controller.
stop_dir() {
	stop_jvm "$1" broker "${2:-TERM}"
	stop_jvm "$1" controller TERM
	rm -f "$1/bootstrap"
}

# Stops DIR's NAME JVM with SIGNAL, and with SIGKILL if it has not exited 20 s later.
stop_jvm() {
	local dir=$1 name=$2 signal=$3 pid i
	if pid=$(jvm_pid "$dir" "$name"); then
		kill "-$signal" "$pid" 2>/dev/null || true
		# Controlled shutdown of a single node takes a few seconds.
		for ((i = 0; i < 200; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
		fi
	fi
	rm -f "$dir/$name.pid"
}

# Does the broker answer Kafka requests (not merely accept TCP)?
probe() {
	local bootstrap=$1 dir=$2
	if command -v kcat >/dev/null; then
		# A metadata reply comes only once the broker is unfenced and serving.
		kcat -b "$bootstrap" -L -m 3 -q >/dev/null 2>&1
	else
		tool_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
			--command-config "$dir/tools.properties" --list >/dev/null 2>&1
	fi
}

# Adds a SASL_PLAINTEXT listener for SLUICE_BROKER_SASL_USER and an authorizer to DIR's
# server.properties.
secure() {
	local dir=$1 sport user=${SLUICE_BROKER_SASL_USER%%:*} password=${SLUICE_BROKER_SASL_USER#*:}
	sport=$(free_port_from $(($3 + 1)) "$2")
	sed -i -e "s|^\(listeners=.*\)|\1,SASL://127.0.0.1:$sport|" \
		-e "s|^\(advertised.listeners=.*\)|\1,SASL://127.0.0.1:$sport|" \
		-e "s|^\(listener.security.protocol.map=.*\)|\1,SASL:SASL_PLAINTEXT|" "$dir/server.properties"
	cat >>"$dir/server.properties" <<EOF

# SLUICE_BROKER_SASL_USER: one user on its own listener, with ACLs.
sasl.enabled.mechanisms=PLAIN
listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$user="$password";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=true
EOF
	# The controller checks the ACL requests the broker forwards; the broker is its super user.
	cat >>"$dir/controller.properties" <<EOF
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=true
EOF
	echo "127.0.0.1:$sport" >"$dir/sasl-bootstrap"
}

# ---------------------------------------------------------------- commands

cmd_start() {
	local dir bport cport cid bootstrap
	dir=$(state_dir "${1:-}")
	cmd_install

	# A broker left running from an earlier start on this dir goes first.
	stop_dir "$dir"
	if [[ -e $dir ]]; then
		if [[ -f $dir/$STATE_MARK ]] || [[ -d $dir && -z $(ls -A "$dir") ]]; then
			rm -rf "$dir"
		else
			die "refusing to wipe $dir: not a broker.sh state dir"
		fi
	fi
	mkdir -p "$dir/data"
	: >"$dir/$STATE_MARK"

	if [[ -n ${SLUICE_BROKER_PORT:-} ]]; then
		bport=$SLUICE_BROKER_PORT
		port_busy "$bport" && die "SLUICE_BROKER_PORT=$bport is already in use"
	else
		bport=$(free_port_from 19092)
	fi
	cport=$(free_port_from $((bport + 1)) "$bport")
	bootstrap=127.0.0.1:$bport

	# One KRaft controller and one broker, as in Kafka's config/controller.properties and
	# config/broker.properties, shrunk for tests.
	cat >"$dir/controller.properties" <<EOF
process.roles=controller
node.id=2
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=CONTROLLER://127.0.0.1:$cport
advertised.listeners=CONTROLLER://127.0.0.1:$cport
listener.security.protocol.map=CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/controller-data
# A broker that stops heartbeating is fenced after this long (default 9 s): the wait of every
# crash-restart.
broker.session.timeout.ms=6000
# Topics created without these get them from the controller.
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
EOF
	cat >"$dir/server.properties" <<EOF
process.roles=broker
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$bport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
broker.heartbeat.interval.ms=1000
log.dirs=$dir/data

# Topics: tests rely on auto-creation.
auto.create.topics.enable=true
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
delete.topic.enable=true

# Internal topics on one node: replication 1, fewer partitions (faster first
# group join / first transaction than the default 50).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
# A transaction open this long is "hanging" to broker.sh transactions (default 15 min); tests
# use at most a minute.
transaction.max.timeout.ms=60000
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Tests should not wait 3 s for the first consumer group rebalance.
group.initial.rebalance.delay.ms=0

# Small machine, small data.
num.network.threads=2
num.io.threads=4
log.segment.bytes=16777216
log.cleaner.dedupe.buffer.size=16777216
${SLUICE_BROKER_PROPERTIES:-}
EOF
	[[ -n ${SLUICE_BROKER_SASL_USER:-} ]] && secure "$dir" "$bport" "$cport"
	# For TopicCommand: fail fast instead of the admin client's 60 s default.
	cat >"$dir/tools.properties" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF

	cid=$(new_cluster_id)
	if ! tool_java kafka.tools.StorageTool format --standalone -t "$cid" \
		-c "$dir/controller.properties" >"$dir/format.log" 2>&1 ||
		! tool_java kafka.tools.StorageTool format -t "$cid" \
			-c "$dir/server.properties" >>"$dir/format.log" 2>&1; then
		cat "$dir/format.log" >&2
		die "formatting $dir/data failed"
	fi

	launch_controller "$dir" && launch "$dir" "$bootstrap" && warm_up "$bootstrap" "$dir" &&
		echo "$bootstrap"
}

# Starts Kafka on DIR/PROPERTIES with JVM_OPTIONS in the background, logging to DIR/NAME.log;
# writes DIR/NAME.pid and prints the pid.
spawn_jvm() {
	local dir=$1 name=$2 properties=$3
	shift 3
	# nohup + stdin from /dev/null + all output to the log: the JVM holds none of our
	# descriptors, so `addr=$(broker.sh start)` returns at once. Appending keeps the log of the
	# run before a restart.
	nohup "$JAVA" "$@" -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$HERE/log4j2.yaml" -Dsluice.kafka.loglevel=INFO \
		-Dkafka.logs.dir="$dir" \
		-cp "$LIBS/*" kafka.Kafka "$dir/$properties" \
		>>"$dir/$name.log" 2>&1 </dev/null &
	echo $! | tee "$dir/$name.pid"
}

# The controller's port, from DIR/controller.properties.
controller_port() {
	sed -n 's|^listeners=CONTROLLER://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$1/controller.properties"
}

# Starts DIR's controller JVM unless it runs, and waits (with a deadline) until it listens.
launch_controller() {
	local dir=$1 port pid
	jvm_pid "$dir" controller >/dev/null && return 0
	port=$(controller_port "$dir")
	port_busy "$port" && die "cannot start the controller: 127.0.0.1:$port is taken by another process"
	pid=$(spawn_jvm "$dir" controller controller.properties -Xms64m -Xmx256m -XX:+UseSerialGC)
	local deadline=$((SECONDS + ${SLUICE_BROKER_START_TIMEOUT:-90}))
	until port_busy "$port"; do
		if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
			echo "---- tail of $dir/controller.log" >&2
			tail -n 60 "$dir/controller.log" >&2 || true
			stop_jvm "$dir" controller KILL
			die "the controller did not listen on 127.0.0.1:$port"
		fi
		sleep 0.2
	done
}

# Starts the broker JVM on DIR's server.properties and data, and waits (with a deadline) until
# it serves on BOOTSTRAP; then writes DIR/bootstrap. On failure: the log's tail, and exit.
launch() {
	local dir=$1 bootstrap=$2 port=${2##*:}
	local pid
	# shellcheck disable=SC2086 # the options are words
	pid=$(spawn_jvm "$dir" broker server.properties ${SLUICE_BROKER_JVM_OPTIONS:-$TEST_BROKER_JVM_OPTIONS} \
		-Xlog:gc:file="$dir/gc.log":utctime,timemillis)

	local deadline=$((SECONDS + ${SLUICE_BROKER_START_TIMEOUT:-90})) why=""
	while :; do
		if ! kill -0 "$pid" 2>/dev/null; then
			why="the broker exited during start-up"
			break
		fi
		# Cheap TCP check first; the real Kafka probe only once it listens.
		if port_busy "$port" && probe "$bootstrap" "$dir"; then
			echo "$bootstrap" >"$dir/bootstrap"
			return 0
		fi
		if ((SECONDS >= deadline)); then
			why="the broker did not answer on $bootstrap within ${SLUICE_BROKER_START_TIMEOUT:-90} s"
			break
		fi
		sleep 0.3
	done
	echo "---- tail of $dir/broker.log" >&2
	tail -n 60 "$dir/broker.log" >&2 || true
	echo "----" >&2
	stop_dir "$dir"
	die "$why"
}

# The first idempotent producer makes the broker create and load __transaction_state, which can
# take tens of seconds; do it now so that no test's timing depends on it.
warm_up() {
	local bootstrap=$1 dir=$2
	if command -v kcat >/dev/null; then
		echo warm-up | timeout 120 kcat -P -b "$bootstrap" -t __sluice_warm_up \
			-X enable.idempotence=true -X message.timeout.ms=110000 >>"$dir/warm-up.log" 2>&1 || true
	fi
}

cmd_stop() {
	stop_dir "$(state_dir "${1:-}")"
}

cmd_resume() {
	local dir bootstrap
	dir=$(state_dir "${1:-}")
	[[ -f $dir/$STATE_MARK && -f $dir/server.properties ]] ||
		die "no broker state in $dir to resume (run: broker.sh start)"
	if jvm_pid "$dir" >/dev/null; then
		cat "$dir/bootstrap"
		return 0
	fi
	launch_controller "$dir"
	# The same address as before, so clients configured with it reconnect.
	bootstrap=$(sed -n 's|^listeners=PLAINTEXT://\([^,]*\).*|\1|p' "$dir/server.properties")
	[[ -n $bootstrap ]] || die "no PLAINTEXT listener in $dir/server.properties"
	# While it was down, another broker (an overlapping test run) may have taken its port.
	port_busy "${bootstrap##*:}" && die "cannot resume: $bootstrap is taken by another process"
	launch "$dir" "$bootstrap" && echo "$bootstrap"
}

# restart DIR: a controlled shutdown of the broker, then resume.
cmd_restart() {
	local dir
	dir=$(state_dir "${1:-}")
	stop_jvm "$dir" broker TERM
	cmd_resume "$dir"
}

# crash-restart DIR: SIGKILL the broker; once the controller has fenced it (its heartbeats
# stopped for broker.session.timeout.ms), resume. Started before that, it would come back under
# its old registration (see the top of this file).
cmd_crash_restart() {
	local dir fenced deadline
	dir=$(state_dir "${1:-}")
	fences() { grep -c "Fencing broker 1 at epoch" "$dir/controller.log" || true; }
	fenced=$(fences)
	stop_jvm "$dir" broker KILL
	deadline=$((SECONDS + 60))
	until (($(fences) > fenced)); do
		((SECONDS < deadline)) || die "the controller did not fence the killed broker within 60 s"
		sleep 0.2
	done
	cmd_resume "$dir"
}

cmd_topic_create() {
	(($# >= 2)) || die "usage: broker.sh topic-create NAME PARTITIONS [DIR]"
	local name=$1 parts=$2 dir out
	dir=$(state_dir "${3:-}")
	[[ -f $dir/bootstrap ]] || die "no running broker in $dir (run: broker.sh start)"
	cmd_install
	if ! out=$(tool_java org.apache.kafka.tools.TopicCommand \
		--bootstrap-server "$(<"$dir/bootstrap")" --command-config "$dir/tools.properties" \
		--create --if-not-exists --topic "$name" --partitions "$parts" \
		--replication-factor 1 2>&1); then
		echo "$out" >&2
		die "creating topic $name failed"
	fi
}

cmd_deny_transactions() {
	(($# >= 1)) || die "usage: broker.sh deny-transactions USER [DIR]"
	local user=$1 dir out
	dir=$(state_dir "${2:-}")
	[[ -f $dir/bootstrap ]] || die "no running broker in $dir (run: broker.sh start)"
	if ! out=$(tool_java org.apache.kafka.tools.AclCommand \
		--bootstrap-server "$(<"$dir/bootstrap")" --command-config "$dir/tools.properties" \
		--add --deny-principal "User:$user" --operation All --transactional-id '*' 2>&1); then
		echo "$out" >&2
		die "adding the ACL failed"
	fi
}

cmd_transactions() {
	local dir bootstrap
	dir=$(state_dir "${1:-}")
	[[ -f $dir/bootstrap ]] || die "no running broker in $dir (run: broker.sh start)"
	bootstrap=$(<"$dir/bootstrap")
	txn() {
		tool_java org.apache.kafka.tools.TransactionsCommand --bootstrap-server "$bootstrap" \
			--command-config "$dir/tools.properties" "$@" 2>&1 || true
	}
	echo "-- transactions:"
	txn list
	echo "-- hanging (open longer than transaction.max.timeout.ms):"
	txn find-hanging --broker-id 1
	# find-hanging skips internal topics: offsets committed in a transaction that never ended.
	echo "-- producers of __consumer_offsets-0 (an open transaction holds the group's offsets):"
	txn describe-producers --topic __consumer_offsets --partition 0
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:-}" ;;
resume) cmd_resume "${2:-}" ;;
restart) cmd_restart "${2:-}" ;;
crash-restart) cmd_crash_restart "${2:-}" ;;
topic-create) shift && cmd_topic_create "$@" ;;
deny-transactions) shift && cmd_deny_transactions "$@" ;;
transactions) cmd_transactions "${2:-}" ;;
*)
	sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
	exit 2
	;;
esac
