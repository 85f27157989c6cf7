#!/usr/bin/env bash
# Installs what the test suite drives for real, when it is missing: Chromium (+ driver) for the
# browser tests, nginx for the TLS front, SoftHSM2 for the PKCS#11 provider, the PostgreSQL server
# binaries, systemd-analyze, shellcheck and minisign for the packaging checks, and anvil (npm) for EVM.
# Debian/Ubuntu. Runs apt-get as root, or through sudo when available.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v caddy >/dev/null 2>&1 || need+=(caddy)
/usr/bin/python3 -c 'import seccomp' 2>/dev/null || need+=(python3-seccomp)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# The release signature's compatibility check (tests/packaging/test_signing.py) and the install tests'
# user accounts and network namespace (util-linux unshare, passwd's useradd).
command -v minisign >/dev/null 2>&1 || need+=(minisign)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v useradd >/dev/null 2>&1 || need+=(passwd)

if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "installing test tools: ${need[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "error: need root or sudo to install: ${need[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # policy-rc.d keeps the packages from starting services (nginx, postgresql) on install.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

# anvil (Foundry's local EVM node) from npm, into .tools/ (git-ignored).
if ! command -v anvil >/dev/null 2>&1 && [ ! -x .tools/node_modules/.bin/anvil ]; then
  echo "installing anvil (@foundry-rs/anvil) into .tools/"
  npm install --silent --no-audit --no-fund --prefix .tools @foundry-rs/anvil >/dev/null
fi
