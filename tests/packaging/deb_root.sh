#!/usr/bin/env bash
# One .deb through install, remove and purge inside a throwaway root: a private mount
# namespace where / is an overlay (the host's root file system below, a tmpfs above), so
# dpkg, adduser and the maintainer scripts run for real and every change vanishes with
# the namespace. Prints PASS/FAIL lines for tests/packaging/run.sh.
#
#   unshare --mount bash tests/packaging/deb_root.sh PACKAGE.deb [RUNNER]
#
# RUNNER runs the packaged binary (qemu-aarch64-static for arm64 on an x86_64 host).
set -uo pipefail
deb=$1
runner=${2:-}
here=$(cd "$(dirname "$0")" && pwd)

if [ "${DEB_ROOT_INSIDE:-}" != 1 ]; then
  # Outside the chroot: build the throwaway root, then run this script again inside it.
  top=$(mktemp -d /tmp/qqmail-debroot.XXXXXX)
  mount -t tmpfs tmpfs "$top" || { echo "FAIL throwaway root: mount tmpfs"; exit 1; }
  mkdir -p "$top/upper" "$top/work" "$top/root"
  if ! mount -t overlay overlay -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$top/root"; then
    echo "FAIL throwaway root: overlay mount on / (needs root and a private mount namespace)"
    exit 1
  fi
  mount --rbind /dev "$top/root/dev"
  mount -t proc proc "$top/root/proc"
  # An empty /run: no /run/systemd/system, so the maintainer scripts leave systemd alone.
  mount -t tmpfs tmpfs "$top/root/run"
  mkdir -p "$top/root/run/deb"
  cp "$deb" "$here/deb_root.sh" "$top/root/run/deb/"
  [ -n "$runner" ] && cp "$(command -v "$runner")" "$top/root/run/deb/runner"
  DEB_ROOT_INSIDE=1 chroot "$top/root" /bin/bash /run/deb/deb_root.sh "/run/deb/$(basename "$deb")" \
    "${runner:+/run/deb/runner}"
  exit
fi

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; }
check() { # name, command...
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
}
arch=$(dpkg-deb -f "$deb" Architecture)
dpkg --add-architecture "$arch" 2>/dev/null || true
state=/var/lib/qqmail-proxy
config=/etc/qqmail-proxy/config.toml

if out=$(dpkg -i "$deb" 2>&1); then
  pass "$arch: dpkg -i"
else
  fail "$arch: dpkg -i" "$out"
  exit 0
fi
grep -q 'systemctl enable --now qqmail-proxy' <<<"$out" \
  && pass "$arch: postinst prints the next step" || fail "$arch: postinst prints the next step" "$out"
check "$arch: system user and group qqmail-proxy (no login shell)" \
  bash -c '[ "$(getent passwd qqmail-proxy | cut -d: -f6,7)" = /var/lib/qqmail-proxy:/usr/sbin/nologin ] && getent group qqmail-proxy'
expect=(
  "/usr/bin/qqmail-proxy root:root 755"
  "/lib/systemd/system/qqmail-proxy.service root:root 644"
  "/etc/qqmail-proxy/config.toml root:qqmail-proxy 640"
  "$state qqmail-proxy:qqmail-proxy 700"
  "/usr/share/doc/qqmail-proxy/copyright root:root 644"
)
for line in "${expect[@]}"; do
  read -r path want_owner want_mode <<<"$line"
  got=$(stat -c '%U:%G %a' "$path" 2>&1)
  [ "$got" = "$want_owner $want_mode" ] && pass "$arch: $path $got" \
    || fail "$arch: $path" "got '$got', expected '$want_owner $want_mode'"
done
check "$arch: the config is a conffile" \
  bash -c "dpkg-query -W -f='\${Conffiles}' qqmail-proxy | grep -q '$config'"
check "$arch: the unit runs /usr/bin/qqmail-proxy as qqmail-proxy with the package's config" \
  bash -c "grep -qx 'ExecStart=/usr/bin/qqmail-proxy serve --config $config' /lib/systemd/system/qqmail-proxy.service \
    && grep -qx 'User=qqmail-proxy' /lib/systemd/system/qqmail-proxy.service \
    && ! grep -q DynamicUser=yes /lib/systemd/system/qqmail-proxy.service"
if out=$($runner /usr/bin/qqmail-proxy --version 2>&1) \
  && grep -q "$(dpkg-deb -f "$deb" Version) (.*linux" <<<"$out"; then
  pass "$arch: qqmail-proxy --version ($out)"
else
  fail "$arch: qqmail-proxy --version" "$out"
fi
check "$arch: the shipped config passes check-config" \
  env QQMAIL_AUTH_CODE=abcdefghijklmnop $runner /usr/bin/qqmail-proxy check-config --config "$config"

# An admin's edit and the service's state must survive `dpkg -r`.
echo '# edited by the admin' >>"$config"
touch "$state/local-users"
if out=$(dpkg -r qqmail-proxy 2>&1); then pass "$arch: dpkg -r"; else fail "$arch: dpkg -r" "$out"; fi
[ ! -e /usr/bin/qqmail-proxy ] && pass "$arch: -r removes the binary" \
  || fail "$arch: -r removes the binary" "still there"
grep -q 'edited by the admin' "$config" 2>/dev/null && pass "$arch: -r keeps the edited config" \
  || fail "$arch: -r keeps the edited config" "$(ls -l "$config" 2>&1)"
[ -e "$state/local-users" ] && getent passwd qqmail-proxy >/dev/null \
  && pass "$arch: -r keeps the state and the user" || fail "$arch: -r keeps the state and the user"
if out=$(dpkg -P qqmail-proxy 2>&1); then pass "$arch: dpkg -P"; else fail "$arch: dpkg -P" "$out"; fi
left=$(ls -d /etc/qqmail-proxy "$state" /lib/systemd/system/qqmail-proxy.service 2>/dev/null)
[ -z "$left" ] && pass "$arch: -P removes config and state" || fail "$arch: -P removes config and state" "$left"
if getent passwd qqmail-proxy >/dev/null || getent group qqmail-proxy >/dev/null; then
  fail "$arch: -P removes the user and group" "$(getent passwd qqmail-proxy; getent group qqmail-proxy)"
else
  pass "$arch: -P removes the user and group"
fi
if dpkg-query -W -f='${Status}' qqmail-proxy 2>/dev/null | grep -q installed; then
  fail "$arch: -P leaves no dpkg record" "$(dpkg-query -W -f='${Status}' qqmail-proxy)"
else
  pass "$arch: -P leaves no dpkg record"
fi
exit 0
