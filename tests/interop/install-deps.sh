#!/usr/bin/env bash
# Installs the Debian packages the interop suite (tests/interop/run.sh) needs.
# Postfix is preseeded to "No configuration" so its postinst writes no main.cf
# and starts nothing; the suite runs its own instance from a temp config dir.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: must run as root (apt-get)" >&2
  exit 1
fi

echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

PACKAGES=(
  dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd
  postfix
  swaks libnet-ssleay-perl msmtp curl isync neomutt openssl ca-certificates
  python3
)

# Already there (a reused machine): nothing to fetch.
missing=()
for p in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps.sh: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi
echo "install-deps.sh: installing ${missing[*]}"

apt-get update -qq
apt-get install -y --no-install-recommends "${PACKAGES[@]}"
