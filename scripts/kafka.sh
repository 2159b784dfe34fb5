#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, broker+controller) on loopback, for tests and local use.
# Needs only a JDK 17+ (`java`) and, on the first run, Maven (`mvn`) to fetch the jars from Maven Central.
#
#   scripts/kafka.sh start    # prints the bootstrap address (127.0.0.1:PORT) as the last stdout line
#   scripts/kafka.sh env      # prints `export KAFKA_BROKERS=127.0.0.1:PORT` for the running broker
#   scripts/kafka.sh status   # exit 0 if running, 1 if not
#   scripts/kafka.sh stop     # SIGTERM (then SIGKILL after KAFKA_STOP_TIMEOUT s) and remove the state dir
#   scripts/kafka.sh sasl-env # prints the TEST_KAFKA_SASL_SSL_* exports of the SASL_SSL listener (KAFKA_SASL_SSL=1)
#
# Env: KAFKA_PORT, KAFKA_CONTROLLER_PORT (default: random free ports), KAFKA_START_TIMEOUT (90 s),
#      KAFKA_STOP_TIMEOUT (30 s), KAFKA_STATE_DIR, KAFKA_CACHE_DIR, KAFKA_HEAP (-Xmx384m), JAVA_HOME.
#      KAFKA_SASL_SSL=1 (at start): a second listener, SASL_SSL on KAFKA_SASL_SSL_PORT (default: a random
#      free port), beside the unchanged PLAINTEXT one. It has SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN
#      enabled for one user (KAFKA_SASL_SSL_USERNAME, default gateway; a random password), and a server
#      certificate for 127.0.0.1 and localhost signed by a throwaway CA made with openssl
#      ($KAFKA_STATE_DIR/tls/ca.pem). Needs openssl. KAFKA_SASL_REAUTH_MS: the broker's
#      connections.max.reauth.ms (SASL sessions must re-authenticate within it or are closed).
set -euo pipefail

KAFKA_VERSION=4.1.1
LOG4J_VERSION=2.24.3
CACHE_DIR="${KAFKA_CACHE_DIR:-${HOME:-/tmp}/.cache/order-gateway/kafka-$KAFKA_VERSION}"
STATE_DIR="${KAFKA_STATE_DIR:-${TMPDIR:-/tmp}/order-gateway-kafka}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
PID_FILE="$STATE_DIR/pid" BOOT_FILE="$STATE_DIR/bootstrap" LOG="$STATE_DIR/logs/server.log"
SASL_FILE="$STATE_DIR/sasl-env"  # the exports `sasl-env` prints (mode 0600: it holds the password)
SASL_USER="${KAFKA_SASL_SSL_USERNAME:-gateway}"

die() { echo "kafka.sh: $*" >&2; exit 1; }
say() { echo "kafka.sh: $*" >&2; }

find_java() {
  JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (install a JDK 17+, e.g. apt-get install openjdk-17-jdk-headless, or set JAVA_HOME)"
  local v; v=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [[ "${v:-0}" -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17+, found: $("$JAVA" -version 2>&1 | head -1)"
}

# Fetch kafka_2.13 + kafka-tools + log4j2 (slf4j binding) and their runtime deps into $CACHE_DIR/libs.
fetch_jars() {
  [[ -f "$CACHE_DIR/.complete" ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found and no cached jars in $CACHE_DIR (install Maven, e.g. apt-get install maven)"
  say "fetching Kafka $KAFKA_VERSION jars with mvn into $CACHE_DIR ..."
  local tmp; tmp=$(mktemp -d)
  cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
 <groupId>local</groupId><artifactId>kafka-jars</artifactId><version>1</version><packaging>pom</packaging>
 <dependencies>
  <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
  <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version>
   <exclusions><!-- Connect/REST bits are not needed by the CLI tools we use -->
    <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
    <exclusion><groupId>com.fasterxml.jackson.jakarta.rs</groupId><artifactId>*</artifactId></exclusion>
   </exclusions></dependency>
  <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
 </dependencies></project>
EOF
  if ! mvn -B -q -f "$tmp/pom.xml" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
       -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
    tail -n 40 "$tmp/mvn.log" >&2; rm -rf "$tmp"; die "mvn could not fetch the Kafka $KAFKA_VERSION jars"
  fi
  [[ -f "$tmp/libs/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "mvn finished but kafka_2.13-$KAFKA_VERSION.jar is missing"; }
  mkdir -p "$CACHE_DIR"; rm -rf "$CACHE_DIR/libs"; mv "$tmp/libs" "$CACHE_DIR/libs"; rm -rf "$tmp"
  touch "$CACHE_DIR/.complete"
}

# java for short-lived CLI tools (logs go to tools.log, not the terminal)
tool() {
  timeout "${TOOL_TIMEOUT:-60}" "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$STATE_DIR/log4j2.properties" -Dkafka.logname=tools -cp "$CACHE_DIR/libs/*" "$@"
}

running_pid() {  # prints the broker pid if it is alive
  local pid; pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' && echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[[ "$EPHEMERAL_LOW" =~ ^[0-9]+$ && "$EPHEMERAL_LOW" -gt 11000 ]] || EPHEMERAL_LOW=32768
free_port() {
  local p
  for _ in $(seq 200); do
    # Below the kernel's ephemeral range: a port in it may be the local end of some client's
    # connection, which no probe sees and which makes the bind fail ("Address already in use").
    p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
    [[ "$p" != "${1:-}" ]] && ! port_busy "$p" && { echo "$p"; return; }
  done
  die "no free loopback port found"
}

# sasl_ssl_config PORT CPORT SPORT: the throwaway CA and the broker's certificate (openssl), the
# SASL_SSL listener beside PLAINTEXT in server.properties, and the exports `sasl-env` prints. The
# SCRAM credentials are added when the storage is formatted; PLAIN's user is in its JAAS config.
sasl_ssl_config() {
  local port=$1 cport=$2 sport=$3 tls="$STATE_DIR/tls"
  command -v openssl >/dev/null 2>&1 || die "openssl not found (needed for KAFKA_SASL_SSL=1)"
  [[ "$SASL_USER" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || die "KAFKA_SASL_SSL_USERNAME must be 1 to 64 letters, digits, '.', '_' or '-'"
  SASL_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr '+/' 'xy')   # letters and digits: safe in JAAS and --add-scram
  mkdir -p "$tls"; chmod 700 "$tls"
  ( cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 7 -subj "/CN=order-gateway kafka.sh test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt -days 7 -extfile server.ext
    cat server.key server.crt >server-keystore.pem   # Kafka's PEM keystore: the unencrypted PKCS#8 key and its chain
  ) >"$STATE_DIR/logs/openssl.out" 2>&1 || { cat "$STATE_DIR/logs/openssl.out" >&2; die "openssl could not make the certificates"; }
  chmod 600 "$tls"/*.key "$tls/server-keystore.pem"
  sed -i \
    -e "s|^listeners=.*|listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_SSL://127.0.0.1:$sport|" \
    -e "s|^advertised.listeners=.*|advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport|" \
    -e "s|^listener.security.protocol.map=.*|listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL|" \
    "$STATE_DIR/server.properties"
  cat >>"$STATE_DIR/server.properties" <<EOF
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$tls/server-keystore.pem
listener.name.sasl_ssl.ssl.client.auth=none
EOF
  # KAFKA_SASL_REAUTH_MS: the session lifetime after which a SASL connection must
  # re-authenticate (KIP-368) or be closed; unset: Kafka's default, 0 (never).
  local reauth="${KAFKA_SASL_REAUTH_MS:-}"
  [[ -z "$reauth" || "$reauth" =~ ^[1-9][0-9]*$ ]] || die "KAFKA_SASL_REAUTH_MS must be a positive number of milliseconds"
  [[ -n "$reauth" ]] && echo "connections.max.reauth.ms=$reauth" >>"$STATE_DIR/server.properties"
  chmod 600 "$STATE_DIR/server.properties"
  ( umask 077
    printf 'export TEST_KAFKA_SASL_SSL_BROKERS=127.0.0.1:%s\nexport TEST_KAFKA_SASL_SSL_CA_FILE=%q\nexport TEST_KAFKA_SASL_SSL_USERNAME=%s\nexport TEST_KAFKA_SASL_SSL_PASSWORD=%s\n' \
      "$sport" "$tls/ca.pem" "$SASL_USER" "$SASL_PASSWORD" >"$SASL_FILE"
    [[ -z "$reauth" ]] || echo "export TEST_KAFKA_SASL_SSL_REAUTH_MS=$reauth" >>"$SASL_FILE" )
}

start() {
  local pid
  if pid=$(running_pid); then
    say "already running (pid $pid)"; cat "$BOOT_FILE"; return 0
  fi
  find_java; fetch_jars
  local port="${KAFKA_PORT:-$(free_port)}"; local cport="${KAFKA_CONTROLLER_PORT:-$(free_port "$port")}"
  port_busy "$port" && die "port $port is already in use"
  port_busy "$cport" && die "controller port $cport is already in use"
  local sport=""
  if [[ "${KAFKA_SASL_SSL:-}" == 1 ]]; then
    sport="${KAFKA_SASL_SSL_PORT:-$(free_port "$port")}"
    while [[ "$sport" == "$cport" ]]; do sport=$(free_port "$port"); done
    port_busy "$sport" && die "SASL_SSL port $sport is already in use"
  fi
  rm -rf "$STATE_DIR/data" "$STATE_DIR/logs" "$STATE_DIR/tls" "$PID_FILE" "$BOOT_FILE" "$SASL_FILE"
  mkdir -p "$STATE_DIR/data" "$STATE_DIR/logs"
  cat >"$STATE_DIR/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $STATE_DIR/logs/\${sys:kafka.logname:-server}.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
EOF
  cat >"$STATE_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$STATE_DIR/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  printf 'request.timeout.ms=5000\ndefault.api.timeout.ms=10000\n' >"$STATE_DIR/client.properties"
  local scram=()
  if [[ -n "$sport" ]]; then
    sasl_ssl_config "$port" "$cport" "$sport"
    scram=(--add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASSWORD]"
           --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]")
  fi

  # cluster id: 16 random bytes, base64url without padding (what `kafka-storage random-uuid` prints)
  local id=-
  while [[ "$id" == -* ]]; do id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'); done
  tool kafka.tools.StorageTool format -t "$id" -c "$STATE_DIR/server.properties" "${scram[@]}" >"$STATE_DIR/logs/format.out" 2>&1 \
    || { cat "$STATE_DIR/logs/format.out" >&2; die "kafka-storage format failed"; }

  local t0=$SECONDS
  # shellcheck disable=SC2086
  setsid nohup "$JAVA" ${KAFKA_HEAP:--Xmx384m -Xms64m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$STATE_DIR/log4j2.properties" -Dkafka.logname=server \
    -cp "$CACHE_DIR/libs/*" kafka.Kafka "$STATE_DIR/server.properties" \
    >"$STATE_DIR/logs/stdout.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"

  local why="timed out after ${START_TIMEOUT}s"
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then why="broker process exited"; break; fi
    # ready = the broker answers a metadata request (kafka-topics --list)
    if port_busy "$port" && { [[ -z "$sport" ]] || port_busy "$sport"; } && TOOL_TIMEOUT=20 tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" \
         --command-config "$STATE_DIR/client.properties" --list >/dev/null 2>>"$STATE_DIR/logs/tools.err"; then
      local ver; ver=$(grep -m1 -o 'Kafka version: [^ ]*' "$LOG" 2>/dev/null | awk '{print $3}')
      echo "127.0.0.1:$port" >"$BOOT_FILE"
      echo "kafka ${ver:-$KAFKA_VERSION} started at 127.0.0.1:$port (pid $pid) in $((SECONDS - t0))s; logs: $STATE_DIR/logs" >&2
      [[ -n "$sport" ]] && echo "kafka.sh: SASL_SSL (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN) at 127.0.0.1:$sport for user $SASL_USER; CA $STATE_DIR/tls/ca.pem; $0 sasl-env prints the settings" >&2
      echo "127.0.0.1:$port"
      return 0
    fi
    (( SECONDS - t0 >= START_TIMEOUT )) && break
    sleep 0.5
  done
  echo "kafka.sh: broker not ready: $why. Last 50 lines of $LOG:" >&2
  tail -n 50 "$LOG" >&2 2>/dev/null || true
  tail -n 20 "$STATE_DIR/logs/stdout.log" >&2 2>/dev/null || true
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
  exit 1
}

stop() {
  local pid
  if pid=$(running_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then say "broker did not stop in ${STOP_TIMEOUT}s, killing"; kill -KILL "$pid" 2>/dev/null || true; fi
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    say "stopped (pid $pid)"
  else
    say "not running"
  fi
  rm -rf "$STATE_DIR/data" "$STATE_DIR/logs" "$STATE_DIR/tls" "$STATE_DIR"/{server,client,log4j2}.properties "$PID_FILE" "$BOOT_FILE" "$SASL_FILE"
  rmdir "$STATE_DIR" 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if pid=$(running_pid); then echo "running: $(cat "$BOOT_FILE" 2>/dev/null || echo starting) (pid $pid)"; else echo "not running"; exit 1; fi ;;
  env)
    running_pid >/dev/null && [[ -s "$BOOT_FILE" ]] || die "no running broker (run: $0 start)"
    echo "export KAFKA_BROKERS=$(cat "$BOOT_FILE")" ;;
  sasl-env)
    running_pid >/dev/null && [[ -s "$BOOT_FILE" ]] || die "no running broker (run: KAFKA_SASL_SSL=1 $0 start)"
    [[ -s "$SASL_FILE" ]] || die "the running broker has no SASL_SSL listener (start it with KAFKA_SASL_SSL=1)"
    cat "$SASL_FILE" ;;
  *) echo "usage: $0 {start|stop|status|env|sasl-env}" >&2; exit 2 ;;
esac
