#!/usr/bin/env bash
# Benchmark: qqmail-proxy against direct TLS, stunnel, a Dovecot proxy and a Postfix
# relayhost, all on 127.0.0.1, with a fast Rust upstream stand-in (bench/loadgen).
# Writes markdown tables with PASS/MISS against the project's targets.
#
# Usage: bash bench/run.sh [--quick] [--out FILE] [--keep] [--no-daemons] [--profile]
#                          [--only KINDS]
#   --quick       small sizes, finishes well under 2 minutes (CI smoke run); builds
#                 debug binaries; writes bench/RESULTS-quick.md unless --out is given
#   --out FILE    where to write the report (default bench/RESULTS.md, full mode)
#   --keep        keep the temp dir (logs, results.jsonl) even when everything ran
#   --no-daemons  skip the Dovecot and Postfix peers (no root needed then)
#   --only KINDS  run only these measurements (comma-separated: throughput, latency,
#                 rate, idle, startup), e.g. while working on one target
#   --profile     afterwards, profile qqmail-proxy with perf (a symbol-carrying build of
#                 the release profile) during throughput, latency and rate runs;
#                 flat profiles go to bench/profiles/*.txt
# Environment:
#   QQMAIL_PROXY_BIN  proxy binary to measure (default: built here, release in full mode,
#                     debug in --quick mode, under ${CARGO_TARGET_DIR:-target})
#   LATENCY_PAUSE_MS  pause between two latency sessions (default 2; 0 = back to back)
#
# Exit status: non-zero when any measurement failed to run (a missed target is not a
# failure). The last line is always "bench: N passed, M failed" (N = measurements run).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
START_S=$(date +%s)

MODE=full
OUT=""
KEEP=0
DAEMONS=1
PROFILE_RUN=0
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MODE=quick ;;
    --out) OUT="${2:?--out needs a file}"; shift ;;
    --keep) KEEP=1 ;;
    --no-daemons) DAEMONS=0 ;;
    --profile) PROFILE_RUN=1 ;;
    --only) ONLY=",${2:?--only needs a list}," ; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$MODE" = quick ]; then
  MSG=2000000 RUNS=3 SESSIONS=20 RATE_CLIENTS=20 RATE_SECS=5 IDLE=100 CPU_SECS=2 STARTS=3
  PROFILE=debug
  : "${OUT:=$HERE/RESULTS-quick.md}"
else
  MSG=50000000 RUNS=5 SESSIONS=200 RATE_CLIENTS=50 RATE_SECS=30 IDLE=2000 CPU_SECS=10 STARTS=10
  PROFILE=release
  : "${OUT:=$HERE/RESULTS.md}"
fi
RATE_SIZE=10240

EMAIL="tester@qq.com"
CODE="abcdefghijklmnop"
LOCAL_USER="printer"
LOCAL_PASS="printer-local-pw-1"

T="$(mktemp -d /tmp/qqmail-bench.XXXXXX)"
chmod 755 "$T"  # Postfix and Dovecot drop privileges and must traverse it.
mkdir -p "$T/logs"
RESULTS="$T/results.jsonl"
META="$T/meta.tsv"
: > "$RESULTS"
: > "$META"

UPSTREAM_PID="" STUNNEL_PID="" DOVECOT_PID="" POSTFIX_PID="" PROXY_PID="" IDLE_PROXY_PID=""
CHILD_PID=""

log() { echo "bench: $*"; }
# True when measurement kind $1 is to run (all of them unless --only was given).
want() { [ -z "$ONLY" ] || [[ "$ONLY" == *",$1,"* ]]; }
meta() { printf '%s\t%s\n' "$1" "$2" >> "$META"; }
# A failure that produced no result line of its own (setup, a crashed measurement).
record_failure() {
  local kind="$1" what="$2" msg="$3"
  msg="$(printf '%s' "$msg" | tr '\n"\\\t' '  /' | cut -c1-400)"
  printf '{"kind":"%s","proto":"-","peer":"%s","ok":false,"error":"%s"}\n' "$kind" "$what" "$msg" >> "$RESULTS"
  echo "bench: FAILED $kind $what: $msg" >&2
}

# shellcheck disable=SC2317  # called from traps
stop_pid() {
  local pid="$1"
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
}

# shellcheck disable=SC2317
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$CHILD_PID"
  stop_pid "$IDLE_PROXY_PID"
  stop_pid "$PROXY_PID"
  stop_pid "$STUNNEL_PID"
  if [ -n "$POSTFIX_PID" ]; then
    postfix -c "$T/postfix/conf" stop >/dev/null 2>&1 || stop_pid "$POSTFIX_PID"
  fi
  stop_pid "$DOVECOT_PID"
  stop_pid "$UPSTREAM_PID"
  local npass nfail
  npass=$(grep -c '"ok":true' "$RESULTS" 2>/dev/null)
  nfail=$(grep -c '"ok":false' "$RESULTS" 2>/dev/null)
  if [ "$npass" -eq 0 ] && [ "$nfail" -eq 0 ]; then
    nfail=1
    echo "bench: no measurement ran"
  fi
  if [ "$nfail" -gt 0 ] || [ "$rc" -ne 0 ] || [ "$KEEP" -eq 1 ]; then
    echo "bench: logs kept in $T"
  else
    rm -rf "$T"
  fi
  echo "bench: total time $(( $(date +%s) - START_S )) s"
  echo "bench: $npass passed, $nfail failed"
  [ "$nfail" -eq 0 ] && [ "$rc" -eq 0 ] && exit 0
  exit 1
}
trap cleanup EXIT
# shellcheck disable=SC2317
on_signal() { record_failure suite interrupted "received a signal"; exit 130; }
trap on_signal INT TERM

# Waits (bounded: 10 s) until 127.0.0.1:$1 accepts, failing early if PID $2 died.
wait_port() {
  local port="$1" pid="${2:-}"
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.05
  done
  return 1
}

# --- limits ---------------------------------------------------------------------
HARD_NOFILE=$(ulimit -Hn)
if [ "$HARD_NOFILE" = unlimited ]; then HARD_NOFILE=1048576; fi
WANT_NOFILE=$(( IDLE * 2 + 1024 ))
if [ "$HARD_NOFILE" -lt "$WANT_NOFILE" ]; then WANT_NOFILE=$HARD_NOFILE; fi
if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$WANT_NOFILE" ]; then
  ulimit -Sn "$WANT_NOFILE" || true
fi
NOFILE=$(ulimit -Sn)
if [ "$NOFILE" != unlimited ] && [ $(( IDLE * 2 + 200 )) -gt "$NOFILE" ]; then
  IDLE=$(( (NOFILE - 200) / 2 ))
  log "ulimit -n is $NOFILE: idle test reduced to $IDLE sessions"
fi

# --- tools ----------------------------------------------------------------------
if ! command -v stunnel >/dev/null 2>&1; then
  log "installing stunnel4"
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends stunnel4; } \
      >"$T/logs/apt.log" 2>&1 || true
  fi
fi
HAVE_STUNNEL=1
command -v stunnel >/dev/null 2>&1 || { HAVE_STUNNEL=0; record_failure setup stunnel "stunnel not installed (apt-get install stunnel4)"; }
if [ "$DAEMONS" -eq 1 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    record_failure setup daemons "Dovecot/Postfix peers need root (or pass --no-daemons)"; DAEMONS=0
  elif ! command -v dovecot >/dev/null 2>&1 || ! command -v postfix >/dev/null 2>&1; then
    record_failure setup daemons "dovecot/postfix not installed (tests/install-deps.sh)"; DAEMONS=0
  fi
fi

# --- builds ---------------------------------------------------------------------
export CARGO_TARGET_DIR="$TARGET_DIR"
cargo_profile_flag=()
[ "$PROFILE" = release ] && cargo_profile_flag=(--release)
log "building the load generator ($PROFILE)"
t0=$(date +%s%N)
if ! cargo build -q "${cargo_profile_flag[@]}" --manifest-path "$HERE/loadgen/Cargo.toml" 2>"$T/logs/loadgen-build.log"; then
  record_failure setup loadgen-build "$(tail -n 5 "$T/logs/loadgen-build.log")"
  exit 1
fi
LOADGEN_BUILD_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
LG="$TARGET_DIR/$PROFILE/qqmail-bench"

if [ -n "${QQMAIL_PROXY_BIN:-}" ]; then
  PROXY_BIN="$QQMAIL_PROXY_BIN"
  PROXY_BUILD="given (QQMAIL_PROXY_BIN)"
else
  log "building qqmail-proxy ($PROFILE)"
  t0=$(date +%s%N)
  if ! (cd "$REPO" && cargo build -q "${cargo_profile_flag[@]}" --bin qqmail-proxy) 2>"$T/logs/proxy-build.log"; then
    record_failure setup proxy-build "$(tail -n 5 "$T/logs/proxy-build.log")"
    exit 1
  fi
  PROXY_BUILD="$PROFILE, built in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  PROXY_BIN="$TARGET_DIR/$PROFILE/qqmail-proxy"
fi
# A private copy: the target dir may be shared with other checkouts that rebuild it.
if ! cp "$PROXY_BIN" "$T/qqmail-proxy" 2>"$T/logs/cp.log"; then
  record_failure setup proxy-binary "cannot copy $PROXY_BIN: $(cat "$T/logs/cp.log")"
  exit 1
fi
PROXY_BIN="$T/qqmail-proxy"

# --- certificates (a throw-away CA, as in tests/interop) --------------------------
make_cert() {
  local name="$1"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$T/$name-key.pem" -out "$T/$name.csr" -subj "/CN=localhost" >>"$T/logs/openssl.log" 2>&1 || return 1
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" > "$T/$name-ext.cnf"
  openssl x509 -req -in "$T/$name.csr" -CA "$T/ca.pem" -CAkey "$T/ca-key.pem" -CAcreateserial \
    -days 2 -sha256 -extfile "$T/$name-ext.cnf" -out "$T/$name-cert.pem" >>"$T/logs/openssl.log" 2>&1 || return 1
  chmod 644 "$T/$name-key.pem"  # throw-away key; the daemons drop privileges
}
if ! { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
         -keyout "$T/ca-key.pem" -out "$T/ca.pem" -days 2 -sha256 -subj "/CN=qqmail-proxy bench CA" \
         -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
         >>"$T/logs/openssl.log" 2>&1 && make_cert server && make_cert local; }; then
  record_failure setup certificates "$(tail -n 3 "$T/logs/openssl.log")"
  exit 1
fi

# --- upstream stand-in ----------------------------------------------------------------
"$LG" upstream --cert "$T/server-cert.pem" --key "$T/server-key.pem" --email "$EMAIL" --code "$CODE" \
  --message-size "$MSG" --ports-file "$T/upstream.ports" >"$T/logs/upstream.log" 2>&1 &
UPSTREAM_PID=$!
for _ in $(seq 1 200); do [ -s "$T/upstream.ports" ] && break; kill -0 "$UPSTREAM_PID" 2>/dev/null || break; sleep 0.05; done
if [ ! -s "$T/upstream.ports" ]; then
  record_failure setup upstream "$(tail -n 3 "$T/logs/upstream.log")"
  exit 1
fi
port_of() { sed -n "s/^$1=//p" "$T/upstream.ports"; }
USMTP=$(port_of smtp) UIMAP=$(port_of imap) UPOP3=$(port_of pop3) UCTL=$(port_of ctl)
CTL="127.0.0.1:$UCTL"
log "upstream stand-in: smtps $USMTP, imaps $UIMAP, pop3s $UPOP3, control $UCTL"

read -r SSMTP SIMAP SPOP3 DIMAP DPOP3 PSMTP < <("$LG" ports 6)
fill() {
  sed -e "s|@T@|$T|g" -e "s|@USMTP@|$USMTP|g" -e "s|@UIMAP@|$UIMAP|g" -e "s|@UPOP3@|$UPOP3|g" \
      -e "s|@SSMTP@|$SSMTP|g" -e "s|@SIMAP@|$SIMAP|g" -e "s|@SPOP3@|$SPOP3|g" \
      -e "s|@DIMAP@|$DIMAP|g" -e "s|@DPOP3@|$DPOP3|g" -e "s|@PSMTP@|$PSMTP|g" \
      -e "s|@EMAIL@|$EMAIL|g" -e "s|@CODE@|$CODE|g" -e "s|@USER@|$LOCAL_USER|g" \
      -e "s|@HASH@|${HASH:-}|g" "$1"
}

# --- stunnel ----------------------------------------------------------------------------
if [ "$HAVE_STUNNEL" -eq 1 ]; then
  mkdir -p "$T/stunnel"
  fill "$HERE/conf/stunnel.conf.in" > "$T/stunnel/stunnel.conf"
  stunnel "$T/stunnel/stunnel.conf" >"$T/stunnel/stdout.log" 2>&1 &
  STUNNEL_PID=$!
  if ! { wait_port "$SSMTP" "$STUNNEL_PID" && wait_port "$SIMAP" "$STUNNEL_PID" && wait_port "$SPOP3" "$STUNNEL_PID"; }; then
    record_failure setup stunnel "did not start: $(tail -n 3 "$T/stunnel/stunnel.log" "$T/stunnel/stdout.log" 2>/dev/null | tr '\n' ' ')"
    HAVE_STUNNEL=0
  fi
fi

# --- Dovecot proxy and Postfix relayhost ---------------------------------------------------
HAVE_DOVECOT=0 HAVE_POSTFIX=0
if [ "$DAEMONS" -eq 1 ]; then
  DV="$T/dovecot"
  mkdir -p "$DV/run" "$DV/state"
  for svc in imap:$UIMAP pop3:$UPOP3; do
    printf '%s:{PLAIN}%s::::::proxy=y host=127.0.0.1 port=%s ssl=any-cert destuser=%s pass=%s\n' \
      "$LOCAL_USER" "$LOCAL_PASS" "${svc#*:}" "$EMAIL" "$CODE" > "$DV/${svc%%:*}.passwd"
  done
  chmod 644 "$DV"/*.passwd
  fill "$HERE/conf/dovecot-proxy.conf.in" > "$DV/dovecot.conf"
  dovecot -F -c "$DV/dovecot.conf" >"$DV/stdout.log" 2>&1 &
  DOVECOT_PID=$!
  if wait_port "$DIMAP" "$DOVECOT_PID" && wait_port "$DPOP3" "$DOVECOT_PID"; then
    HAVE_DOVECOT=1
  else
    record_failure setup dovecot "did not start: $(tail -n 3 "$DV/stdout.log" "$DV/dovecot.log" 2>/dev/null | tr '\n' ' ')"
  fi

  PF="$T/postfix"
  mkdir -p "$PF/conf" "$PF/queue" "$PF/data"
  chown postfix "$PF/data"
  fill "$HERE/conf/postfix-main.cf.in" > "$PF/conf/main.cf"
  fill "$HERE/conf/postfix-master.cf.in" > "$PF/conf/master.cf"
  if postfix -c "$PF/conf" start </dev/null >"$PF/start.log" 2>&1; then
    for _ in $(seq 1 100); do [ -s "$PF/queue/pid/master.pid" ] && break; sleep 0.05; done
    POSTFIX_PID="$(tr -d ' \n' < "$PF/queue/pid/master.pid" 2>/dev/null)"
  fi
  if [ -n "$POSTFIX_PID" ] && wait_port "$PSMTP" "$POSTFIX_PID"; then
    HAVE_POSTFIX=1
  else
    record_failure setup postfix "did not start: $(tail -n 3 "$PF/start.log" "$PF/postfix.log" 2>/dev/null | tr '\n' ' ')"
  fi
fi

# --- qqmail-proxy ----------------------------------------------------------------------
PX="$T/proxy"
mkdir -p "$PX/state"
HASH="$(printf '%s' "$LOCAL_PASS" | "$PROXY_BIN" hash-password 2>"$PX/hash.err" | tr -d '\r\n')"
# shellcheck disable=SC2016  # a literal '$argon2' prefix
if [[ "$HASH" != '$argon2'* ]]; then
  record_failure setup hash-password "$(head -c 300 "$PX/hash.err")"
  exit 1
fi
fill "$HERE/conf/proxy.toml.in" > "$PX/config.toml"

# Starts a proxy; sets STARTED_PID and PX_SMTP/PX_IMAP/PX_POP3 from its "listening" lines.
start_proxy() {
  local logf="$1" bin="${2:-$PROXY_BIN}"
  QQMAIL_AUTH_CODE="$CODE" "$bin" --log-format json serve --config "$PX/config.toml" >"$logf" 2>&1 &
  STARTED_PID=$!
  for _ in $(seq 1 300); do
    grep -q '"message":"ready"' "$logf" 2>/dev/null && break
    kill -0 "$STARTED_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  grep -q '"message":"ready"' "$logf" || return 1
  listener() {  # protocol [tls mode]
    grep '"message":"listening"' "$logf" | grep "\"protocol\":\"$1\"" \
      | { if [ -n "${2:-}" ]; then grep "\"tls\":\"$2\""; else cat; fi; } | head -n 1 \
      | sed -n 's/.*"addr":"\([^"]*\)".*/\1/p'
  }
  PX_SMTP=$(listener smtp plain) PX_IMAP=$(listener imap plain) PX_POP3=$(listener pop3 plain)
  PXA_SMTP=$(listener smtp auto) PXA_IMAP=$(listener imap auto) PXA_POP3=$(listener pop3 auto)
  PX_ADMIN=$(listener admin)
  [ -n "$PX_SMTP" ] && [ -n "$PX_IMAP" ] && [ -n "$PX_POP3" ] && [ -n "$PX_ADMIN" ] \
    && [ -n "$PXA_SMTP" ] && [ -n "$PXA_IMAP" ] && [ -n "$PXA_POP3" ]
}
if start_proxy "$PX/proxy.log"; then
  PROXY_PID=$STARTED_PID
  log "qqmail-proxy: smtp $PX_SMTP, imap $PX_IMAP, pop3 $PX_POP3"
else
  record_failure setup proxy "did not start: $(tail -n 3 "$PX/proxy.log" | tr '\n' ' ' | cut -c1-300)"
  exit 1
fi

# --- peers --------------------------------------------------------------------------------
# One peer spec per line: label|mode|addr|user|pass[|e2e].
peers_for() {
  local proto="$1" kind="$2" uport sport dport="" px pxa
  case "$proto" in
    smtp) uport=$USMTP sport=$SSMTP px=$PX_SMTP pxa=$PXA_SMTP ;;
    imap) uport=$UIMAP sport=$SIMAP dport=$DIMAP px=$PX_IMAP pxa=$PXA_IMAP ;;
    pop3) uport=$UPOP3 sport=$SPOP3 dport=$DPOP3 px=$PX_POP3 pxa=$PXA_POP3 ;;
  esac
  echo "direct|tls|127.0.0.1:$uport|$EMAIL|$CODE"
  [ "$HAVE_STUNNEL" -eq 1 ] && echo "stunnel|plain|127.0.0.1:$sport|$EMAIL|$CODE"
  if [ "$proto" = smtp ]; then
    # Postfix is store-and-forward: timed until the upstream has the message (e2e).
    [ "$HAVE_POSTFIX" -eq 1 ] && [ "$kind" != latency ] && echo "postfix|plain|127.0.0.1:$PSMTP|||e2e"
  else
    [ "$HAVE_DOVECOT" -eq 1 ] && echo "dovecot|plain|127.0.0.1:$dport|$LOCAL_USER|$LOCAL_PASS"
  fi
  echo "proxy|plain|$px|$LOCAL_USER|$LOCAL_PASS"
  if [ "$kind" = latency ]; then
    echo "proxy-starttls|starttls|$px|$LOCAL_USER|$LOCAL_PASS"
    # auto://: a plaintext client waits for the sniffing window, a TLS client does not.
    echo "proxy-auto|plain|$pxa|$LOCAL_USER|$LOCAL_PASS"
    echo "proxy-auto-tls|tls|$pxa|$LOCAL_USER|$LOCAL_PASS"
  fi
  return 0
}
peer_args() {
  PEER_ARGS=()
  local spec
  while read -r spec; do PEER_ARGS+=(--peer "$spec"); done < <(peers_for "$1" "$2")
}

# Runs one measurement under a watchdog; its JSON lines go to results.jsonl.
measure() {
  local name="$1" limit="$2"; shift 2
  log "measuring $name"
  local before after rc t0
  before=$(wc -l < "$RESULTS")
  t0=$(date +%s%N)
  timeout --kill-after=5 "$limit" "$@" >>"$RESULTS" 2>"$T/logs/$name.err" &
  CHILD_PID=$!
  wait "$CHILD_PID"
  rc=$?
  CHILD_PID=""
  after=$(wc -l < "$RESULTS")
  if [ "$rc" -ne 0 ] && [ "$after" -eq "$before" ]; then
    record_failure "$name" "-" "exit $rc: $(tail -n 3 "$T/logs/$name.err" | tr '\n' ' ')"
  fi
  tail -n $(( after - before )) "$RESULTS" | sed 's/^/  /' | cut -c1-240
  log "  ($name took $(( ($(date +%s%N) - t0) / 1000000 )) ms)"
}

want throughput && for proto in smtp imap pop3; do
  peer_args "$proto" throughput
  measure "throughput-$proto" 900 "$LG" client throughput --proto "$proto" --ca "$T/ca.pem" \
    --size "$MSG" --runs "$RUNS" --ctl "$CTL" "${PEER_ARGS[@]}"
done
want latency && for proto in imap pop3 smtp; do
  peer_args "$proto" latency
  measure "latency-$proto" 600 "$LG" client latency --proto "$proto" --ca "$T/ca.pem" \
    --sessions "$SESSIONS" --pause-ms "${LATENCY_PAUSE_MS:-2}" --admin "$PX_ADMIN" "${PEER_ARGS[@]}"
done
# Rate: the queueing peers last, since they leave a backlog (the run waits for it to drain).
rate_args=(--peer "direct|tls|127.0.0.1:$USMTP|$EMAIL|$CODE")
[ "$HAVE_STUNNEL" -eq 1 ] && rate_args+=(--peer "stunnel|plain|127.0.0.1:$SSMTP|$EMAIL|$CODE")
rate_args+=(--peer "proxy|plain|$PX_SMTP|$LOCAL_USER|$LOCAL_PASS")
# The two store-and-forward peers last, side by side: each is timed until its backlog
# has reached the upstream.
rate_args+=(--peer "proxy-queue|plain|$PX_SMTP|$LOCAL_USER-queue|$LOCAL_PASS|e2e")
[ "$HAVE_POSTFIX" -eq 1 ] && rate_args+=(--peer "postfix|plain|127.0.0.1:$PSMTP|||e2e")
want rate && measure rate-smtp $(( RATE_SECS * 4 * 3 + 600 )) "$LG" client rate --ca "$T/ca.pem" --ctl "$CTL" \
  --clients "$RATE_CLIENTS" --size "$RATE_SIZE" --secs "$RATE_SECS" "${rate_args[@]}"

# Idle scale on a fresh proxy process, so earlier tests' heap does not hide the growth.
stop_pid "$PROXY_PID"; PROXY_PID=""
if ! want idle; then
  :
elif start_proxy "$PX/proxy-idle.log"; then
  IDLE_PROXY_PID=$STARTED_PID
  measure idle-imap 900 "$LG" client idle --ca "$T/ca.pem" --ctl "$CTL" --pid "$IDLE_PROXY_PID" \
    --sessions "$IDLE" --cpu-secs "$CPU_SECS" --clk-tck "$(getconf CLK_TCK)" \
    --peer "proxy|plain|$PX_IMAP|$LOCAL_USER|$LOCAL_PASS"
  stop_pid "$IDLE_PROXY_PID"; IDLE_PROXY_PID=""
else
  record_failure idle-imap proxy "fresh proxy did not start"
fi

want startup && measure startup 300 "$LG" startup --bin "$PROXY_BIN" --config "$PX/config.toml" --runs "$STARTS" \
  --env "QQMAIL_AUTH_CODE=$CODE"

# --- optional profiles --------------------------------------------------------------------
# A flat perf profile of a fresh proxy (release profile, symbols kept) per workload, so a
# missed target can be traced to what bounded it.
profile_case() {
  local name="$1" secs="$2"; shift 2
  log "profiling $name"
  perf record -q -F 1999 -o "$T/perf-$name.data" -p "$PROF_PID" -- sleep "$secs" \
    >"$T/logs/perf-$name.log" 2>&1 &
  local perf_pid=$!
  sleep 0.5
  # The workload is cut off when the sampling window ends.
  timeout --kill-after=2 "$(( secs + 1 ))" "$@" >"$T/logs/prof-$name.out" 2>&1
  wait "$perf_pid"
  {
    echo "# perf: qqmail-proxy during $name: $*" | sed "s|$T|\$T|g"
    echo "# flat profile, self time; samples at 1999 Hz over ${secs} s"
    perf report -i "$T/perf-$name.data" --stdio --no-children --sort dso,symbol \
      --percent-limit 0.7 2>/dev/null | grep -v '^$' | grep -v '^#' | grep '%' | head -n 40
  } > "$HERE/profiles/$name.txt"
}
if [ "$PROFILE_RUN" -eq 1 ]; then
  if ! command -v perf >/dev/null 2>&1; then
    record_failure profile perf "perf not installed (apt-get install linux-perf)"
  elif ! (cd "$REPO" && cargo build -q --profile profiling --config 'profile.profiling.inherits="release"' \
            --config 'profile.profiling.strip=false' --config 'profile.profiling.debug="line-tables-only"' \
            --bin qqmail-proxy) 2>"$T/logs/profiling-build.log"; then
    record_failure profile build "$(tail -n 3 "$T/logs/profiling-build.log")"
  else
    cp "$TARGET_DIR/profiling/qqmail-proxy" "$T/qqmail-proxy-prof"
    mkdir -p "$HERE/profiles"
    if start_proxy "$PX/proxy-prof.log" "$T/qqmail-proxy-prof"; then
      PROF_PID=$STARTED_PID
      IDLE_PROXY_PID=$PROF_PID  # stopped by the EXIT trap if anything below fails
      for proto in smtp imap pop3; do
        p="$PX_SMTP"; [ "$proto" = imap ] && p="$PX_IMAP"; [ "$proto" = pop3 ] && p="$PX_POP3"
        profile_case "throughput-$proto" 8 "$LG" client throughput --proto "$proto" --ca "$T/ca.pem" \
          --size "$MSG" --runs 100 --ctl "$CTL" --peer "proxy|plain|$p|$LOCAL_USER|$LOCAL_PASS"
      done
      profile_case latency-imap 8 "$LG" client latency --proto imap --ca "$T/ca.pem" --sessions 3000 \
        --peer "proxy|plain|$PX_IMAP|$LOCAL_USER|$LOCAL_PASS"
      profile_case rate-smtp 8 "$LG" client rate --ca "$T/ca.pem" --ctl "$CTL" --clients "$RATE_CLIENTS" \
        --size "$RATE_SIZE" --secs 9 --peer "proxy|plain|$PX_SMTP|$LOCAL_USER|$LOCAL_PASS"
      stop_pid "$PROF_PID"; IDLE_PROXY_PID=""
      log "profiles written to $HERE/profiles/"
    else
      record_failure profile proxy "profiling build did not start"
    fi
  fi
fi

# --- meta and report ---------------------------------------------------------------------
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta mode "$MODE (message $MSG B × $RUNS runs, $SESSIONS sessions, $RATE_CLIENTS clients × ${RATE_SECS} s, $IDLE idle sessions)"
meta machine "$(nproc) CPUs: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
meta kernel "$(uname -sr)"
meta rustc "$(rustc -V 2>/dev/null)"
meta qqmail-proxy "$("$PROXY_BIN" --version 2>/dev/null), source of commit $(git -C "$REPO" log -1 --format=%h -- src Cargo.toml Cargo.lock 2>/dev/null || echo '?') ($PROXY_BUILD)"
meta load-generator "bench/loadgen ($PROFILE, built in $LOADGEN_BUILD_MS ms)"
meta stunnel "$(stunnel -version 2>&1 | grep -m1 -o 'stunnel [0-9.]*' || echo 'not installed')"
meta dovecot "$(dovecot --version 2>/dev/null || echo 'not installed')"
meta postfix "$(postconf -d -h mail_version 2>/dev/null || echo 'not installed')"
meta openssl "$(openssl version 2>/dev/null)"
meta "ulimit -n" "$(ulimit -Sn) (soft; hard $(ulimit -Hn))"
meta binary_bytes "$(stat -c %s "$PROXY_BIN")"
meta binary_stripped "$(file -b "$PROXY_BIN" 2>/dev/null | grep -o 'not stripped\|stripped' || echo '?')"
meta "run time" "$(( $(date +%s) - START_S )) s including builds"

NOTES=()
[ "$MODE" = full ] && [ -f "$HERE/ANALYSIS.md" ] && NOTES=(--notes "$HERE/ANALYSIS.md")
if "$LG" report --results "$RESULTS" --meta "$META" --out "$OUT" "${NOTES[@]}"; then
  log "report written to $OUT"
else
  record_failure report - "could not write $OUT"
fi
exit 0
