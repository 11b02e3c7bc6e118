#!/usr/bin/env bash
# The release artifacts of packaging/build.sh, smoke-tested offline on this x86_64 machine:
# the static aarch64 binary under qemu-aarch64-static (SMTP to a fake implicit-TLS
# upstream, IMAP LOGIN + FETCH), the arm64 image run with qemu as its entrypoint's
# interpreter, and both .deb packages through install/remove/purge in a throwaway root,
# plus lintian. Prints PASS/FAIL per check and ends with "packaging: N passed, M failed".
#
#   bash tests/packaging/run.sh
#
# The aarch64 binary is a real release build (target/cross, about 3 minutes on 2 cores);
# the x86_64 one reuses the debug objects `cargo test` built (a few seconds, as in
# tests/docker), since its release build is the same recipe on the usual toolchain.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
repo=$(pwd)
here=$repo/tests/packaging
docker=$repo/tests/docker
started=$(date +%s)

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
finish() {
  echo "packaging: finished in $(($(date +%s) - started)) s"
  echo "packaging: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit
}
# PASS/FAIL lines of a helper script, counted here.
tally() {
  local line
  while IFS= read -r line; do
    case $line in
      "PASS "*) pass "${line#PASS }" ;;
      "FAIL "*) fail "${line#FAIL }" ;;
      *) echo "$line" ;;
    esac
  done
}

# --- tools (build.sh installs its own; these are the test's) ------------------------------
if ! command -v qemu-aarch64-static >/dev/null && command -v apt-get >/dev/null; then
  echo "packaging: installing qemu-user-static"
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends qemu-user-static; } \
    >/dev/null 2>&1 || echo "packaging: apt-get install qemu-user-static failed"
fi
PATH=$PATH:/usr/sbin
for spec in qemu-aarch64-static:qemu-user-static python3:python3 openssl:openssl \
  unshare:util-linux cargo:"cargo (rustup)"; do
  tool=${spec%%:*}
  command -v "$tool" >/dev/null || { fail "tool $tool missing" "install ${spec#*:}"; finish; }
done
[ "$(id -u)" -eq 0 ] || { fail "root" "the .deb test mounts an overlay root: run as root"; finish; }

work=$(mktemp -d /tmp/qqmail-packaging.XXXXXX)
chmod 0755 "$work"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  [ -n "$(pm ps -aq 2>/dev/null)" ] && pm rm -f -a -t 0 >/dev/null 2>&1
  rm -rf "$work" 2>/dev/null || { chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM
pm() {
  podman --root "$work/storage" --runroot "$work/run" --tmpdir "$work/tmp" \
    --storage-driver vfs --cgroup-manager cgroupfs --events-backend file --runtime runc "$@"
}
mkdir -p "$work/tmp"

# --- packaging/build.sh all -----------------------------------------------------------------
# The x86_64 binary: `cargo rustc` links the debug objects statically (see tests/docker).
mkdir -p "$work/bin"
if cargo rustc --locked --features legacy-tls --bin qqmail-proxy -- -C target-feature=+crt-static -C strip=symbols \
  -o "$work/bin/qqmail-proxy" >"$work/x86.log" 2>&1; then
  x86=$(find "$work/bin" -maxdepth 1 -type f -name 'qqmail-proxy*' ! -name '*.d' | head -n 1)
else
  fail "x86_64 static debug binary" "$(tail -n 20 "$work/x86.log")"
  finish
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
dist=$work/dist
build_started=$(date +%s)
if QQMAIL_DIST=$dist QQMAIL_BINARY_X86_64=$x86 bash packaging/build.sh all >"$work/build.log" 2>&1; then
  pass "packaging/build.sh all in $(($(date +%s) - build_started)) s"
else
  fail "packaging/build.sh all" "$(tail -n 30 "$work/build.log")"
  finish
fi
expected=(
  "qqmail-proxy-$version-x86_64-unknown-linux-gnu" "qqmail-proxy-$version-aarch64-unknown-linux-gnu"
  "qqmail-proxy_${version}_amd64.deb" "qqmail-proxy_${version}_arm64.deb"
  "qqmail-proxy-$version-linux-amd64.tar" "qqmail-proxy-$version-linux-arm64.tar"
)
if out=$(cd "$dist" && sha256sum -c --strict SHA256SUMS 2>&1) \
  && [ "$(awk '{print $2}' "$dist/SHA256SUMS" | sort)" = "$(printf '%s\n' "${expected[@]}" | sort)" ]; then
  pass "dist/ holds both binaries, packages and images, and SHA256SUMS verifies them"
else
  fail "dist/ contents" "$out $(ls "$dist")"
fi
arm=$dist/qqmail-proxy-$version-aarch64-unknown-linux-gnu

# --- the aarch64 binary under qemu --------------------------------------------------------
out=$(file -b "$arm")
if grep -q 'ARM aarch64' <<<"$out" && grep -Eq 'statically linked|static-pie linked' <<<"$out"; then
  pass "file: ARM aarch64, statically linked ($out)"
else
  fail "file: ARM aarch64, statically linked" "$out"
fi
if out=$(qemu-aarch64-static "$arm" --version 2>&1) && grep -q "^qqmail-proxy $version (aarch64-unknown-linux-gnu; " <<<"$out"; then
  pass "qemu-aarch64-static --version: $out"
else
  fail "qemu-aarch64-static --version names aarch64" "$out"
fi

# A fake QQ Mail (implicit-TLS SMTP and IMAP) on 127.0.0.1 with its own CA.
email=12345@qq.com
code=abcdefghijklmnop
(
  cd "$work" || exit 1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=qqmail-proxy packaging test CA" -keyout ca.key -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout server.key -out server.csr
  printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem
) >"$work/openssl.log" 2>&1 || { fail "test CA" "$(tail -n 5 "$work/openssl.log")"; finish; }
chmod 0644 "$work/ca.pem"
python3 "$docker/fake_upstream.py" --cert "$work/server.pem" --key "$work/server.key" \
  --user "$email" --code "$code" --record "$work/received.jsonl" --port-file "$work/fake.port" \
  --imap-port-file "$work/fake-imap.port" >"$work/fake.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [ -s "$work/fake.port" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || break
  sleep 0.1 # polling for the port file; bounded to 10 s
done
[ -s "$work/fake.port" ] || { fail "fake upstream started" "$(cat "$work/fake.log")"; finish; }
smtp_up=$(cat "$work/fake.port")
imap_up=$(cat "$work/fake-imap.port")

# serve with the two variables a user sets, plus where the fake upstream and the
# listeners are (the same variables tests/docker uses).
read -r smtp_port imap_port pop3_port < <(python3 "$docker/client.py" free-ports 3)
upstream_env=(
  QQMAIL_PROVIDER=custom
  QQMAIL_SMTP_SERVER="tls://localhost:$smtp_up"
  QQMAIL_IMAP_SERVER="tls://localhost:$imap_up"
  QQMAIL_CA_FILE="$work/ca.pem"
  QQMAIL_SMTP_LISTEN="127.0.0.1:$smtp_port"
  QQMAIL_IMAP_LISTEN="127.0.0.1:$imap_port"
  QQMAIL_POP3_LISTEN="127.0.0.1:$pop3_port"
)
mkdir -p "$work/state"
chmod 0700 "$work/state"
env -i PATH=/usr/bin:/bin QQMAIL_EMAIL="$email" QQMAIL_AUTH_CODE="$code" "${upstream_env[@]}" \
  QQMAIL_STATE_DIR="$work/state" qemu-aarch64-static "$arm" serve >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
pids+=("$serve_pid")
# Bounded (60 s: RSA key generation under emulation), ends early if serve exits.
if out=$(python3 "$docker/client.py" wait-greeting "$smtp_port" 220 60 2>&1); then
  pass "aarch64 serve (qemu) listens: $out"
  if login=$(python3 "$docker/client.py" login-from-output "$work/serve.out" 2>&1); then
    read -r user password <<<"$login"
    if out=$(python3 "$docker/client.py" send "$smtp_port" "$user" "$password" \
      printer@example.com friend@example.com token-arm64 2>&1) \
      && out=$(python3 "$docker/client.py" check-record "$work/received.jsonl" 1 "$email" \
        friend@example.com token-arm64 2>&1); then
      pass "aarch64: a message sent with the local login reached the upstream intact (code injected, MAIL FROM rewritten)"
    else
      fail "aarch64: SMTP send through the proxy" "$out"
    fi
    if out=$(python3 "$docker/client.py" imap-fetch "$imap_port" "$user" "$password" \
      imap-token-inbox 2>&1); then
      pass "aarch64: IMAP LOGIN with the local login, SELECT INBOX, FETCH 1 BODY[]"
    else
      fail "aarch64: IMAP LOGIN + FETCH" "$out"
    fi
  else
    fail "aarch64: generated login on stdout" "$login"
  fi
else
  fail "aarch64 serve (qemu) listens" "$out; $(tail -n 20 "$work/serve.err")"
fi
kill -TERM "$serve_pid" 2>/dev/null
wait "$serve_pid" 2>/dev/null
status=$?
[ "$status" -eq 0 ] && pass "aarch64: SIGTERM stops serve cleanly" \
  || fail "aarch64: SIGTERM stops serve cleanly" "exit $status; $(tail -n 5 "$work/serve.err")"

# --- the arm64 image, qemu as its entrypoint's interpreter ---------------------------------
if out=$(pm load -q -i "$dist/qqmail-proxy-$version-linux-arm64.tar" 2>&1); then
  image=localhost/qqmail-proxy:$version-arm64
  got=$(pm image inspect --format '{{.Os}}/{{.Architecture}} {{json .Config.Entrypoint}}' "$image" 2>&1)
  if [ "$got" = 'linux/arm64 ["/qqmail-proxy"]' ]; then
    pass "arm64 image loads: $got"
  else
    fail "arm64 image platform and entrypoint" "$got"
  fi
  # The image's own binary and environment (QQMAIL_DEFAULTS=container, user 65532), with
  # the x86_64 qemu-aarch64-static mounted in to interpret it.
  qemu=$(command -v qemu-aarch64-static)
  if pm run -d --name arm64 --network host --log-driver k8s-file \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    -v "$qemu:/qemu-aarch64-static:ro" -v "$work/ca.pem:/etc/qqmail-proxy/ca.pem:ro" \
    -e QQMAIL_EMAIL="$email" -e QQMAIL_AUTH_CODE="$code" \
    -e QQMAIL_PROVIDER=custom -e QQMAIL_SMTP_SERVER="tls://localhost:$smtp_up" \
    -e QQMAIL_CA_FILE=/etc/qqmail-proxy/ca.pem \
    -e QQMAIL_SMTP_LISTEN="127.0.0.1:$smtp_port" -e QQMAIL_IMAP_LISTEN="127.0.0.1:$imap_port" \
    -e QQMAIL_POP3_LISTEN="127.0.0.1:$pop3_port" \
    --entrypoint '["/qemu-aarch64-static", "/qqmail-proxy"]' "$image" serve >"$work/arm64.id" 2>&1 \
    && out=$(python3 "$docker/client.py" wait-greeting "$smtp_port" 220 60 2>&1); then
    pass "arm64 image (qemu) answers the SMTP greeting: $out"
    if out=$(pm exec arm64 /qemu-aarch64-static /qqmail-proxy healthcheck 2>&1); then
      pass "arm64 image: healthcheck ($out)"
    else
      fail "arm64 image: healthcheck" "$out"
    fi
  else
    fail "arm64 image runs" "$out $(cat "$work/arm64.id") $(pm logs arm64 2>&1 | tail -n 20)"
  fi
  pm rm -f -t 5 arm64 >/dev/null 2>&1
else
  fail "arm64 image loads" "$out"
fi

# --- the .deb packages ---------------------------------------------------------------------
for debarch in amd64 arm64; do
  deb=$dist/qqmail-proxy_${version}_$debarch.deb
  runner=""
  [ "$debarch" = arm64 ] && runner="qemu-aarch64-static"
  tally < <(unshare --mount bash "$here/deb_root.sh" "$deb" $runner 2>&1)
  if out=$(lintian --fail-on error "$deb" 2>&1); then
    pass "lintian $debarch: no errors ($(grep -c '^W:' <<<"$out") warnings)"
  else
    fail "lintian $debarch" "$out"
  fi
done
# The throwaway root must not have leaked onto this machine.
if getent passwd qqmail-proxy >/dev/null || [ -e /etc/qqmail-proxy ] || [ -e /var/lib/qqmail-proxy ] \
  || dpkg-query -W qqmail-proxy >/dev/null 2>&1; then
  fail "the host is untouched by the .deb test" "user, /etc/qqmail-proxy, /var/lib/qqmail-proxy or a dpkg record appeared"
else
  pass "the host is untouched by the .deb test"
fi

finish
