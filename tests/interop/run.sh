#!/usr/bin/env bash
# Interop suite runner: starts Dovecot + Postfix as a stand-in for QQ Mail,
# drives real clients against it directly (phase A) and through
# qqmail-proxy (phase B), and prints one PASS/FAIL line per check.
#
# Usage: tests/interop/run.sh [--direct-only] [--keep]
#   --direct-only  run phase A only (no proxy binary needed)
#   --keep         keep the temp dir (logs, mail store) even when all pass
# Environment:
#   QQMAIL_PROXY_BIN  proxy binary (default: $CARGO_TARGET_DIR/debug/qqmail-proxy,
#                     or target/debug/qqmail-proxy under the repo root)
#
# Everything binds and connects on 127.0.0.1 only. Daemons run by hand from
# config dirs in a temp dir and are stopped by PID on exit (trap), also on
# failure. The last line is always "N passed, M failed".
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
DEFAULT_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/qqmail-proxy"
PROXY_BIN="${QQMAIL_PROXY_BIN:-$DEFAULT_BIN}"

DIRECT_ONLY=0
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --direct-only) DIRECT_ONLY=1 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

# The stand-in account: a QQ-style address and a 16-character authorization
# code. The proxy's local user gets its own, different password.
EMAIL="tester@qq.com"
CODE="abcdefghijklmnop"
LOCAL_USER="printer"
LOCAL_PASS="printer-local-pw-1"

# Prefer Debian's python3 (installed by install-deps.sh); only stdlib is used.
PY="$(command -v /usr/bin/python3 || command -v python3 || true)"

T="$(mktemp -d /tmp/qqmail-interop.XXXXXX)"
# Postfix (user postfix) and Dovecot (dovenull, nobody) must traverse it.
chmod 755 "$T"
RESULTS="$T/results.txt"
: > "$RESULTS"
mkdir -p "$T/logs" "$T/home"

DOVECOT_PID=""
POSTFIX_PID=""
PROXY_PID=""

pass() { echo "PASS $1" | tee -a "$RESULTS"; }
fail() { echo "FAIL $1: $2" | tee -a "$RESULTS"; }

# Stops a process by PID: TERM, a bounded wait, then KILL.
# (Called from the EXIT trap, which shellcheck does not follow.)
# shellcheck disable=SC2317
stop_pid() {
  local pid="$1" name="$2"
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "run.sh: $name (pid $pid) ignored TERM for 10 s, sending KILL" >&2
  kill -KILL "$pid" 2>/dev/null
}

# shellcheck disable=SC2317
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$PROXY_PID" qqmail-proxy
  # The queue checks stop and start Postfix: its master's PID is the current one.
  if [ -n "$POSTFIX_PID" ] && [ -s "$T/postfix/queue/pid/master.pid" ]; then
    POSTFIX_PID="$(tr -d ' \n' < "$T/postfix/queue/pid/master.pid")"
  fi
  stop_pid "$POSTFIX_PID" postfix-master
  stop_pid "$DOVECOT_PID" dovecot
  local npass nfail
  npass=$(grep -c '^PASS ' "$RESULTS" 2>/dev/null)
  nfail=$(grep -c '^FAIL ' "$RESULTS" 2>/dev/null)
  if [ "$nfail" -gt 0 ] || [ "$rc" -ne 0 ] || [ "$KEEP" -eq 1 ]; then
    echo "logs kept in $T (dovecot/dovecot.log, postfix/postfix.log, proxy/proxy.log, logs/)"
  else
    rm -rf "$T"
  fi
  if [ "$nfail" -eq 0 ] && [ "$npass" -eq 0 ]; then
    nfail=1
    echo "FAIL suite: no check ran"
  fi
  echo "$npass passed, $nfail failed"
  if [ "$nfail" -gt 0 ]; then exit 1; fi
  exit "$rc"
}
trap cleanup EXIT
# bash runs a trap only once its foreground child exits, so phases run in
# the background under `wait` (which a signal interrupts) and a signal stops
# the running phase before the EXIT trap stops the daemons.
CHILD_PID=""
# shellcheck disable=SC2317
on_signal() {
  fail "suite/interrupted" "received a signal"
  stop_pid "$CHILD_PID" check.py
  exit 130
}
trap on_signal INT TERM

# Waits (bounded: 10 s) until something accepts TCP on 127.0.0.1:$1,
# failing early if the daemon with PID $2 died.
wait_port() {
  local port="$1" pid="$2"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# Waits (bounded: 10 s) for a unix socket to appear.
wait_socket() {
  local path="$1"
  for _ in $(seq 1 100); do
    [ -S "$path" ] && return 0
    sleep 0.1
  done
  return 1
}

# --- tools -----------------------------------------------------------------
# A missing tool is a FAIL that names the package, never a silent skip.
# Client tools are checked again by check.py for the checks that use them.
need_tool() {
  local tool="$1" pkg="$2"
  if command -v "$tool" >/dev/null 2>&1; then
    pass "setup/tool-$tool"
    return 0
  fi
  fail "setup/tool-$tool" "not installed; apt-get install $pkg (or run tests/interop/install-deps.sh)"
  return 1
}

ok=1
need_tool openssl openssl || ok=0
need_tool dovecot "dovecot-imapd dovecot-pop3d dovecot-lmtpd" || ok=0
need_tool postfix postfix || ok=0
need_tool python3 python3 || ok=0
for pair in swaks:swaks msmtp:msmtp curl:curl mbsync:isync neomutt:neomutt; do
  need_tool "${pair%%:*}" "${pair##*:}"
done
for u in dovecot dovenull postfix nobody; do
  if ! id "$u" >/dev/null 2>&1; then
    fail "setup/user-$u" "system user missing (installed by the dovecot/postfix packages)"
    ok=0
  fi
done
[ "$ok" -eq 1 ] || exit 1
if [ "$(id -u)" -ne 0 ]; then
  fail "setup/root" "the stand-in servers need root (Postfix master, Dovecot)"
  exit 1
fi

# --- ports -----------------------------------------------------------------
# Free high ports on 127.0.0.1, picked by binding :0 (a tiny race is accepted).
read -r P_SMTPS P_IMAPS P_POP3S < <("$PY" - <<'EOF'
import socket
socks = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

# --- test CA and certificates ---------------------------------------------
make_cert() {
  # $1 = name; signs $T/$1-cert.pem with the test CA, SAN IP 127.0.0.1 + localhost.
  local name="$1"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$T/$name-key.pem" -out "$T/$name.csr" -subj "/CN=localhost" \
    >>"$T/logs/openssl.log" 2>&1 || return 1
  cat > "$T/$name-ext.cnf" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
  openssl x509 -req -in "$T/$name.csr" -CA "$T/ca.pem" -CAkey "$T/ca-key.pem" \
    -CAcreateserial -days 2 -sha256 -extfile "$T/$name-ext.cnf" \
    -out "$T/$name-cert.pem" >>"$T/logs/openssl.log" 2>&1 || return 1
  # The daemons drop privileges; a throw-away test key may be world-readable.
  chmod 644 "$T/$name-key.pem"
}

if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
     -keyout "$T/ca-key.pem" -out "$T/ca.pem" -days 2 -sha256 \
     -subj "/CN=qqmail-proxy interop test CA" \
     -addext "basicConstraints=critical,CA:TRUE" \
     -addext "keyUsage=critical,keyCertSign,cRLSign" >>"$T/logs/openssl.log" 2>&1 \
   && make_cert server && make_cert local \
   && openssl verify -CAfile "$T/ca.pem" "$T/server-cert.pem" "$T/local-cert.pem" >>"$T/logs/openssl.log" 2>&1; then
  pass "setup/test-ca"
else
  fail "setup/test-ca" "openssl failed, see $T/logs/openssl.log"
  exit 1
fi

# --- Dovecot: IMAPS + POP3S + LMTP + auth socket for Postfix ----------------
DV="$T/dovecot"
mkdir -p "$DV/run" "$DV/state" "$T/mail"
chown nobody:nogroup "$T/mail"
# passwd-file: the only valid password is the code, so every successful
# login in dovecot.log proves the client (or the proxy) presented the code.
printf '%s:{PLAIN}%s\n' "$EMAIL" "$CODE" > "$DV/passwd"
chmod 644 "$DV/passwd"
sed -e "s|@T@|$T|g" -e "s|@IMAPS@|$P_IMAPS|g" -e "s|@POP3S@|$P_POP3S|g" \
  "$HERE/conf/dovecot.conf.in" > "$DV/dovecot.conf"

dovecot -F -c "$DV/dovecot.conf" >"$DV/stdout.log" 2>&1 &
DOVECOT_PID=$!
if wait_port "$P_IMAPS" "$DOVECOT_PID" && wait_port "$P_POP3S" "$DOVECOT_PID" \
   && wait_socket "$DV/lmtp" && wait_socket "$DV/auth-postfix"; then
  pass "setup/dovecot-start"
else
  fail "setup/dovecot-start" "$(tail -n 5 "$DV/stdout.log" "$DV/dovecot.log" 2>/dev/null | tr '\n' ' ')"
  exit 1
fi

# --- Postfix: smtpd in wrapper mode (implicit TLS), SASL via Dovecot ------
# `postfix -c DIR` works as root with no /etc/postfix/main.cf and without
# alternate_config_directories (only the set-gid postdrop/postqueue, i.e.
# the sendmail path, would need that, and the suite never uses it).
# maillog_file must sit under maillog_file_prefixes, and data_directory must
# be owned by the mail_owner.
PF="$T/postfix"
mkdir -p "$PF/conf" "$PF/queue" "$PF/data"
chown postfix "$PF/data"
sed -e "s|@T@|$T|g" "$HERE/conf/postfix-main.cf.in" > "$PF/conf/main.cf"
sed -e "s|@SMTPS@|$P_SMTPS|g" "$HERE/conf/postfix-master.cf.in" > "$PF/conf/master.cf"

if postfix -c "$PF/conf" start </dev/null >"$PF/start.log" 2>&1; then
  for _ in $(seq 1 100); do
    [ -s "$PF/queue/pid/master.pid" ] && break
    sleep 0.1
  done
  POSTFIX_PID="$(tr -d ' \n' < "$PF/queue/pid/master.pid" 2>/dev/null)"
fi
if [ -n "$POSTFIX_PID" ] && wait_port "$P_SMTPS" "$POSTFIX_PID"; then
  pass "setup/postfix-start"
else
  fail "setup/postfix-start" "$(tail -n 5 "$PF/start.log" "$PF/postfix.log" 2>/dev/null | tr '\n' ' ')"
  exit 1
fi

# --- state shared with check.py --------------------------------------------
write_state() {
  "$PY" - "$T/state.json" <<EOF
import json, sys
state = {
    "tmp": "$T",
    "ca": "$T/ca.pem",
    "email": "$EMAIL",
    "code": "$CODE",
    "direct": {"host": "127.0.0.1", "smtp": $P_SMTPS, "imap": $P_IMAPS, "pop3": $P_POP3S},
    "proxy": {"host": "127.0.0.1", "smtp": ${PX_SMTP:-0}, "imap": ${PX_IMAP:-0}, "pop3": ${PX_POP3:-0},
              "user": "$LOCAL_USER", "password": "$LOCAL_PASS",
              "bin": "$PROXY_BIN", "config": "$T/proxy/config.toml"},
    "postfix_conf": "$PF/conf",
    "logs": {"dovecot": "$DV/dovecot.log", "postfix": "$PF/postfix.log",
             "proxy": "$T/proxy/proxy.log",
             "dovecot_offset": ${DV_OFFSET:-0}, "postfix_offset": ${PF_OFFSET:-0}},
    "results": "$RESULTS",
}
json.dump(state, open(sys.argv[1], "w"), indent=2)
EOF
}
write_state

# --- phase A: direct ---------------------------------------------------------
# Each phase runs under a watchdog: every client call has its own timeout,
# but a hang must never eat CI's time budget.
run_phase() {
  local phase="$1" limit="$2" rc
  HOME="$T/home" timeout --kill-after=10 "$limit" "$PY" "$HERE/check.py" "$T/state.json" "$phase" &
  CHILD_PID=$!
  wait "$CHILD_PID"
  rc=$?
  CHILD_PID=""
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    fail "$phase/watchdog" "phase did not finish within ${limit}s"
  elif [ "$rc" -ne 0 ]; then
    fail "$phase/check.py" "exited $rc"
  fi
}

echo "== phase A: clients -> stand-in (implicit TLS, real code)"
run_phase direct 300

if [ "$DIRECT_ONLY" -eq 1 ]; then
  echo "== phase B skipped (--direct-only)"
  exit 0
fi

# --- phase B: through qqmail-proxy --------------------------------------------
echo "== phase B: clients -> qqmail-proxy (plaintext/STARTTLS, local user) -> stand-in"
if [ ! -x "$PROXY_BIN" ]; then
  fail "proxy/binary" "not found or not executable: $PROXY_BIN (cargo build, or set QQMAIL_PROXY_BIN)"
  exit 1
fi
pass "proxy/binary"
# Absolute, since check.py runs it too (`queue list`, `queue retry`).
PROXY_BIN="$(readlink -f "$PROXY_BIN")"

PX="$T/proxy"
mkdir -p "$PX/state"
HASH="$(printf '%s' "$LOCAL_PASS" | "$PROXY_BIN" hash-password 2>"$PX/hash-password.err" | tr -d '\r\n')"
# shellcheck disable=SC2016  # a literal '$argon2' prefix
if [[ "$HASH" == '$argon2'* ]]; then
  pass "proxy/hash-password"
else
  fail "proxy/hash-password" "expected an argon2 PHC string, got '${HASH:0:40}' ($(head -c 300 "$PX/hash-password.err" | tr '\n' ' '))"
  exit 1
fi
sed -e "s|@T@|$T|g" -e "s|@SMTPS@|$P_SMTPS|g" -e "s|@IMAPS@|$P_IMAPS|g" \
    -e "s|@POP3S@|$P_POP3S|g" -e "s|@EMAIL@|$EMAIL|g" -e "s|@USER@|$LOCAL_USER|g" \
    -e "s|@HASH@|$HASH|g" "$HERE/conf/proxy.toml.in" > "$PX/config.toml"

# Mark where the stand-in logs stand, so phase B's upstream logins are told
# apart from phase A's.
DV_OFFSET=$(stat -c %s "$DV/dovecot.log")
PF_OFFSET=$(stat -c %s "$PF/postfix.log")

RUST_LOG=trace QQMAIL_AUTH_CODE="$CODE" \
  "$PROXY_BIN" --log-format json serve --config "$PX/config.toml" >"$PX/proxy.log" 2>&1 &
PROXY_PID=$!

# Bounded wait for the "ready" log line, then read the listening addresses.
ready=0
for _ in $(seq 1 300); do
  if grep -q '"message":"ready"' "$PX/proxy.log" 2>/dev/null; then ready=1; break; fi
  kill -0 "$PROXY_PID" 2>/dev/null || break
  sleep 0.1
done
if [ "$ready" -eq 1 ] && read -r PX_SMTP PX_IMAP PX_POP3 < <("$PY" "$HERE/check.py" --listeners "$PX/proxy.log"); then
  pass "proxy/start"
else
  fail "proxy/start" "no ready line or listeners in 30 s: $(tail -n 5 "$PX/proxy.log" | tr '\n' ' ' | head -c 600)"
  exit 1
fi
write_state

run_phase proxy 600
exit 0
