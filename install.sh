#!/bin/sh
# Install, upgrade, roll back or uninstall the Vigatra appliance from a signed offline release.
#
# Runs as root on a systemd host (Debian 12+ / Ubuntu 22.04+ / RHEL 9: python3 >= 3.11, glibc as the
# bundle needs, systemd >= 250 for encrypted credentials), without network access. A release
# directory holds this script, one bundle per platform (vigatra-<version>-cp3XY-<arch>.tar.gz), their
# CycloneDX SBOMs, SHA256SUMS and SHA256SUMS.minisig. The signature is checked against the release
# public key the customer pins (--trust-key FILE on the first run; kept in /etc/vigatra afterwards)
# before anything is unpacked; then the bundle for this host's Python and CPU is chosen.
#
# Releases live side by side in /opt/vigatra/releases/<version>; /opt/vigatra/current points at the
# running one. An upgrade builds the new release next to the running one, takes an encrypted backup,
# stops the service, migrates, switches the link and starts: the service is down for the migration
# and a restart. `install.sh --rollback` goes back to the previous release (and its pre-upgrade
# backup when the schema moved); `install.sh --uninstall` removes the program and keeps the data.
# `install.sh --help` lists the options; --dry-run runs every check and prints what would be done.
set -eu
umask 022  # releases and the unit must be readable by the service user; secrets set their own umask

PREFIX=/opt/vigatra
ETC=/etc/vigatra
DATA=/var/lib/vigatra
BACKUPS=/var/backups/vigatra
CREDS=$ETC/credentials
PINNED_KEY=$ETC/release-key.pub
UNIT_DIR=/etc/systemd/system
SERVICE=vigatra.service
SERVICE_USER=vigatra
PYTHON=/usr/bin/python3
KEY_PROVIDER=systemd
KEY_FILE=$ETC/kek.key
DB_URL=
PUBLIC_URL=
ADMIN_USERNAME="admin"
PKCS11_MODULE=
PKCS11_TOKEN=vigatra
PKCS11_KEY_LABEL=vigatra-kek
PKCS11_PIN_FILE=
PKCS11_PIN_STDIN=0
TRUST_KEY=
ACTION=install
PURGE=0
YES=0
START=1
DRY_RUN=0
KEEP_RELEASES=3
# A clean PATH for everything we run, whatever the admin's shell had.
SAFE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HERE=$(cd "$(dirname "$0")" && pwd)
BUNDLE=
WORK=
MODE=install

usage() {
    cat <<EOF
Usage: install.sh [OPTIONS]
       install.sh --rollback
       install.sh --uninstall [--purge --yes]

Install or upgrade the Vigatra appliance from this signed offline release. Run as root.
First run: checks the release signature against --trust-key, creates the vigatra user,
$PREFIX/releases/<version> (a Python venv) and $PREFIX/current, $ETC, $DATA and
$BACKUPS, the key-encryption key, the database and the first admin (whose one-time password
is printed once), then installs, enables and starts $SERVICE.
Later runs upgrade: the new release is built beside the running one, an encrypted backup is
taken, the service stops, the database is migrated, the link switches and the service starts.

Options:
  --trust-key FILE         the release public key (minisign format) you received separately;
                           pinned in $PINNED_KEY, which later runs use
  --rollback               go back to the previous release (restoring its pre-upgrade backup
                           when the upgrade changed the database schema)
  --uninstall              stop and remove the service and the program; keep the data, keys,
                           configuration and backups (and list them)
  --purge                  with --uninstall: also delete the data, keys, configuration, backups
                           and the vigatra user (needs --yes)
  --yes                    do not ask (--purge)
  --prefix DIR             where the program goes (default: $PREFIX)
  --python PATH            Python >= 3.11 to build the venv with (default: $PYTHON)
  --backup-dir DIR         where upgrade backups go (default: $BACKUPS)
  --db-url URL             database (default: SQLite in $DATA); PostgreSQL on this host
                           without a password: postgresql+psycopg:///vigatra?host=/run/postgresql
  --public-url URL         the https:// address users reach (server.public_url)
  --admin-username NAME    first admin (default: $ADMIN_USERNAME)
  --key-provider P         where the key-encryption key lives (default: $KEY_PROVIDER):
                             systemd  encrypted systemd credential (host key/TPM2), $CREDS
                             file     a 0400 file readable by the service only (--key-file)
                             pkcs11   an HSM holds it (--pkcs11-* below)
  --key-file PATH          file provider: the KEK file (default: $KEY_FILE)
  --pkcs11-module PATH     pkcs11: the vendor's PKCS#11 library
  --pkcs11-token LABEL     pkcs11: token label (default: $PKCS11_TOKEN)
  --pkcs11-key-label LABEL pkcs11: label of the AES key on the token (default: $PKCS11_KEY_LABEL)
  --pkcs11-pin-file PATH   pkcs11: file with the user PIN (owned by vigatra, mode 0400)
  --pkcs11-pin-stdin       pkcs11: read the user PIN from standard input and keep it only as an
                           encrypted systemd credential
  --no-start               install and enable, but do not (re)start the service
  --dry-run                run every check, print what would be done, change nothing
  -h, --help               this help

Key options, --db-url, --public-url and --admin-username apply to the first run only; to change
them later edit $ETC/vigatra.yaml. Exit status: 0 done, 1 failed, 2 bad usage.
EOF
}

say() { printf '%s\n' "$*"; }
step() { printf '\n==> %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'install.sh: %s (see --help)\n' "$*" >&2; exit 2; }

# Every change to the system goes through run(), or through a function that tests DRY_RUN the
# same way, so that --dry-run lists exactly what a real run does.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '+ %s\n' "$*"
        return 0
    fi
    "$@"
}

need_value() {
    [ $# -ge 2 ] || usage_error "$1 needs a value"
}

plain_path() {  # $1 option name, $2 value: absolute, plain characters (it ends up in sed and unit files)
    case $2 in
        /*) ;;
        *) usage_error "$1 must be an absolute path" ;;
    esac
    case $2 in
        *[!A-Za-z0-9/._-]*) usage_error "$1 may hold only letters, digits and / . _ -" ;;
    esac
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --*=*)
                opt=${1%%=*}
                value=${1#*=}
                shift
                set -- "$opt" "$value" "$@"
                continue
                ;;
            --trust-key) need_value "$@"; TRUST_KEY=$2; shift 2 ;;
            --rollback) ACTION=rollback; shift ;;
            --uninstall) ACTION=uninstall; shift ;;
            --purge) PURGE=1; shift ;;
            --yes) YES=1; shift ;;
            --prefix) need_value "$@"; PREFIX=$2; shift 2 ;;
            --python) need_value "$@"; PYTHON=$2; shift 2 ;;
            --backup-dir) need_value "$@"; BACKUPS=$2; shift 2 ;;
            --db-url) need_value "$@"; DB_URL=$2; shift 2 ;;
            --public-url) need_value "$@"; PUBLIC_URL=$2; shift 2 ;;
            --admin-username) need_value "$@"; ADMIN_USERNAME=$2; shift 2 ;;
            --key-provider) need_value "$@"; KEY_PROVIDER=$2; shift 2 ;;
            --key-file) need_value "$@"; KEY_FILE=$2; shift 2 ;;
            --pkcs11-module) need_value "$@"; PKCS11_MODULE=$2; shift 2 ;;
            --pkcs11-token) need_value "$@"; PKCS11_TOKEN=$2; shift 2 ;;
            --pkcs11-key-label) need_value "$@"; PKCS11_KEY_LABEL=$2; shift 2 ;;
            --pkcs11-pin-file) need_value "$@"; PKCS11_PIN_FILE=$2; shift 2 ;;
            --pkcs11-pin-stdin) PKCS11_PIN_STDIN=1; shift ;;
            --no-start) START=0; shift ;;
            --dry-run) DRY_RUN=1; shift ;;
            -h|--help) usage; exit 0 ;;
            *) usage_error "unknown option: $1" ;;
        esac
    done
    case $KEY_PROVIDER in
        systemd|file|pkcs11) ;;
        *) usage_error "--key-provider must be systemd, file or pkcs11, not '$KEY_PROVIDER'" ;;
    esac
    plain_path --prefix "$PREFIX"
    plain_path --backup-dir "$BACKUPS"
    case $KEY_FILE in
        /*) ;;
        *) usage_error "--key-file must be an absolute path" ;;
    esac
    case $KEY_FILE in
        "$DATA"/*) usage_error "--key-file must be outside $DATA: backups of the data must not carry the key" ;;
    esac
    if [ "$KEY_PROVIDER" = pkcs11 ] && [ -n "$PKCS11_PIN_FILE" ] && [ "$PKCS11_PIN_STDIN" = 1 ]; then
        usage_error "give --pkcs11-pin-file or --pkcs11-pin-stdin, not both"
    fi
    if [ "$PURGE" = 1 ] && [ "$ACTION" != uninstall ]; then
        usage_error "--purge goes with --uninstall"
    fi
    # A password in the URL would be on the command line of `vigatra init` (visible in ps, and in the
    # journal as a transient unit's name) and in the configuration file.
    case $DB_URL in
        *://*:*@*) usage_error "--db-url must not carry a password: use peer authentication (host=/run/postgresql) or ~vigatra/.pgpass" ;;
    esac
    RELEASES=$PREFIX/releases
    CURRENT=$PREFIX/current
    STATE=$PREFIX/install-state
}

# ---------------------------------------------------------------------------------------------
# Prerequisites: read-only, checked before anything else and in --dry-run too.

check_root() {
    if [ "$(id -u)" != 0 ] && [ "$DRY_RUN" = 0 ]; then
        die "must run as root: it creates a system user, $PREFIX, $ETC and a systemd unit (try: sudo $0 ...)"
    fi
}

check_systemd() {
    # sd_booted(3): systemd is PID 1 exactly when /run/systemd/system exists.
    [ -d /run/systemd/system ] ||
        die "systemd is not running as init (PID 1) on this machine (a container?): Vigatra installs as a systemd service; use a host or VM booted with systemd"
    for tool in sha256sum getent runuser systemctl systemd-run openssl tar sort df; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing; this script needs a systemd-based Linux with coreutils, util-linux and openssl"
    done
    if [ "$KEY_PROVIDER" = systemd ] || [ "$PKCS11_PIN_STDIN" = 1 ]; then
        command -v systemd-creds >/dev/null 2>&1 ||
            die "systemd-creds is missing (systemd >= 250 is needed for encrypted credentials); use --key-provider file"
    fi
}

check_prefix() {
    # The service cannot see these (ProtectHome=, PrivateTmp=, a tmpfs /run).
    case $PREFIX in
        /home/*|/root/*|/tmp/*|/var/tmp/*|/run/*)
            if [ "$DRY_RUN" = 0 ]; then
                die "--prefix $PREFIX is hidden from the hardened service; use a path under /opt or /usr/local"
            fi
            warn "--prefix $PREFIX would be refused by a real run (the hardened service cannot see it)"
            ;;
    esac
    # A legacy (0.1.0) install made $PREFIX itself the venv; anything else that is not ours is refused.
    if [ -d "$PREFIX" ] && [ ! -f "$PREFIX/pyvenv.cfg" ] && [ ! -d "$RELEASES" ] && [ -n "$(ls -A "$PREFIX")" ]; then
        die "$PREFIX exists, is not empty and is not a Vigatra installation; refusing to clear it"
    fi
}

python_version() {
    "$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

check_python() {
    [ -x "$PYTHON" ] || die "$PYTHON not found: install python3 (>= 3.11) or pass --python"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is $(python_version), older than 3.11: install python3 >= 3.11 or pass --python"
    # Debian and Ubuntu ship venv's pip bootstrap separately.
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
        die "$PYTHON cannot create a venv: apt-get install python3-venv"
}

host_arch() {
    case $(uname -m) in
        x86_64|amd64) echo x86_64 ;;
        aarch64|arm64) echo aarch64 ;;
        *) uname -m ;;
    esac
}

host_glibc() {
    getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc \([0-9.]*\)$/\1/p'
}

version_lt() {  # $1 < $2, dotted versions
    [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]
}

free_kb() {  # free space, in KiB, on the filesystem that holds $1 (or its nearest existing parent)
    path=$1
    while [ ! -e "$path" ]; do path=$(dirname "$path"); done
    df -Pk "$path" | awk 'NR == 2 { print $4 }'
}

need_space() {  # $1 path, $2 KiB needed, $3 what for
    have=$(free_kb "$1")
    if [ "$have" -lt "$2" ]; then
        die "not enough free space for $3: $(($2 / 1024)) MiB needed on the filesystem of $1, $((have / 1024)) MiB free"
    fi
}

# ---------------------------------------------------------------------------------------------
# The signed release: SHA256SUMS.minisig over SHA256SUMS, verified with OpenSSL (Ed25519 over the
# BLAKE2b-512 of the file, and the trusted comment's signature), minisign's format: a customer can
# check the same files with `minisign -V -p KEY -m SHA256SUMS`.

trusted_key() {
    if [ -n "$TRUST_KEY" ]; then
        [ -f "$TRUST_KEY" ] || die "--trust-key $TRUST_KEY does not exist"
        printf '%s\n' "$TRUST_KEY"
    elif [ -f "$PINNED_KEY" ]; then
        printf '%s\n' "$PINNED_KEY"
    else
        die "cannot check the release signature: pass --trust-key FILE (the Vigatra release public key you received separately from the bundle); nothing was unpacked"
    fi
}

b64file() {  # line $1 of file $2, base64-decoded, to file $3
    sed -n "$1p" "$2" | tr -d '\r' | base64 -d >"$3" 2>/dev/null
}

key_id() {  # the 8-byte key id at bytes 3..10 of file $1, shown as minisign shows it (little-endian, hex)
    head -c 10 "$1" | tail -c 8 | od -An -tx1 | tr -s ' ' '\n' | sed '/^$/d' | tac | tr -d '\n' | tr 'a-f' 'A-F'
}

verify_minisig() {  # $1 file, $2 signature file, $3 public key file; dies with one line on failure
    what=$(basename "$1")
    [ -f "$2" ] || die "$what is not signed ($(basename "$2") is missing): refusing an unsigned release"
    v=$WORK/verify
    rm -rf "$v" && mkdir -p "$v"
    b64file 2 "$3" "$v/pub" || die "$3 is not a minisign public key"
    if [ "$(wc -c <"$v/pub")" -ne 42 ] || [ "$(head -c 2 "$v/pub")" != Ed ]; then
        die "$3 is not a minisign Ed25519 public key"
    fi
    b64file 2 "$2" "$v/sig" || die "$(basename "$2") is not a minisign signature"
    if [ "$(wc -c <"$v/sig")" -ne 74 ] || [ "$(head -c 2 "$v/sig")" != ED ]; then
        die "$(basename "$2") is not a minisign (prehashed Ed25519) signature"
    fi
    want=$(key_id "$v/pub")
    got=$(key_id "$v/sig")
    [ "$want" = "$got" ] ||
        die "$what is signed by key $got, not by the trusted key $want: refusing it; nothing was unpacked"
    # SubjectPublicKeyInfo DER for Ed25519: the fixed 12-byte prefix, then the 32-byte key.
    { printf '\060\052\060\005\006\003\053\145\160\003\041\000'; tail -c 32 "$v/pub"; } >"$v/pub.der"
    tail -c 64 "$v/sig" >"$v/sig.raw"
    openssl dgst -blake2b512 -binary "$1" >"$v/hash"
    openssl pkeyutl -verify -pubin -keyform DER -inkey "$v/pub.der" -rawin -in "$v/hash" -sigfile "$v/sig.raw" \
        >/dev/null 2>&1 || die "the signature of $what does not verify with the trusted key $want: the release was changed; nothing was unpacked"
    comment=$(sed -n 3p "$2" | tr -d '\r')
    case $comment in
        "trusted comment: "*) ;;
        *) die "$(basename "$2") has no trusted comment" ;;
    esac
    { cat "$v/sig.raw"; printf '%s' "${comment#trusted comment: }"; } >"$v/comment"
    b64file 4 "$2" "$v/comment.sig" || die "$(basename "$2") is not a minisign signature"
    openssl pkeyutl -verify -pubin -keyform DER -inkey "$v/pub.der" -rawin -in "$v/comment" -sigfile "$v/comment.sig" \
        >/dev/null 2>&1 || die "the trusted comment of $(basename "$2") does not verify: the signature file was changed"
    say "signature of $what verified (key $want; ${comment#trusted comment: })"
}

# Find the bundle to install. Run from a release directory (tarballs next to this script): verify
# the release, choose this host's bundle, check its hash and unpack it. Run from inside an unpacked
# bundle: verify its own signed SHA256SUMS.
locate_bundle() {
    key=$(trusted_key)
    if [ -f "$HERE/BUNDLE-INFO" ]; then
        BUNDLE=$HERE
        verify_minisig "$BUNDLE/SHA256SUMS" "$BUNDLE/SHA256SUMS.minisig" "$key"
        return 0
    fi
    [ -f "$HERE/SHA256SUMS" ] ||
        die "$HERE is not a Vigatra release (no SHA256SUMS and no BUNDLE-INFO next to install.sh)"
    verify_minisig "$HERE/SHA256SUMS" "$HERE/SHA256SUMS.minisig" "$key"
    pyver=$(python_version)
    target=cp$(echo "$pyver" | tr -d .)-$(host_arch)
    tarball=
    for candidate in "$HERE"/vigatra-*-"$target".tar.gz; do
        [ -f "$candidate" ] && tarball=$candidate
    done
    if [ -z "$tarball" ]; then
        have=
        for candidate in "$HERE"/vigatra-*.tar.gz; do
            [ -f "$candidate" ] || continue
            candidate=${candidate##*/vigatra-}
            candidate=${candidate#*-}
            have="$have ${candidate%.tar.gz}"
        done
        die "no bundle for this host (CPython $pyver on $(host_arch), target $target) in this release; it has:${have:- none}. Fetch the release's vigatra-<version>-$target.tar.gz, or pass --python for another installed Python"
    fi
    name=$(basename "$tarball")
    (cd "$HERE" && grep "  $name\$" SHA256SUMS | sha256sum --check --quiet --strict) ||
        die "$name does not match the signed SHA256SUMS: copy the release again; nothing was unpacked"
    need_space "$WORK" $(($(wc -c <"$tarball") * 3 / 1024)) "unpacking $name"
    mkdir "$WORK/bundle"
    tar -xzf "$tarball" -C "$WORK/bundle" --no-same-owner
    set -- "$WORK"/bundle/*/
    if [ $# -ne 1 ] || [ ! -d "$1" ]; then
        die "$name does not hold one bundle directory"
    fi
    BUNDLE=${1%/}
    say "bundle $name for $target"
}

info() {  # a field of the bundle's BUNDLE-INFO
    sed -n "s/^$1=//p" "$BUNDLE/BUNDLE-INFO" | head -n 1
}

check_bundle() {
    [ -f "$BUNDLE/SHA256SUMS" ] || die "$BUNDLE is not an offline bundle (no SHA256SUMS)"
    [ -f "$BUNDLE/offline-wheels/requirements.lock" ] || die "bundle incomplete: offline-wheels/requirements.lock is missing"
    [ -f "$BUNDLE/systemd/$SERVICE" ] || die "bundle incomplete: systemd/$SERVICE is missing"
    # Every file as built: a truncated copy or an edited file stops here, before anything changes.
    (cd "$BUNDLE" && sha256sum --check --quiet --strict SHA256SUMS) ||
        die "bundle files do not match SHA256SUMS: copy the bundle again"
    set -- "$BUNDLE"/dist/vigatra-*.whl
    if [ $# -ne 1 ] || [ ! -f "$1" ]; then
        die "bundle must hold exactly one dist/vigatra-*.whl"
    fi
    APP_WHEEL=$1
    VERSION=$(info version)
    [ -n "$VERSION" ] || die "bundle has no version in BUNDLE-INFO"
    case $VERSION in
        *[!A-Za-z0-9._+-]*) die "bundle version '$VERSION' is not a plain version string" ;;
    esac
    have=$(python_version)
    want=$(info python)
    if [ -n "$want" ] && [ "$want" != "$have" ]; then
        die "this bundle was built for Python $want but $PYTHON is $have: use the release's bundle for cp$(echo "$have" | tr -d .)-$(host_arch)"
    fi
    arch=$(info arch)
    if [ -n "$arch" ] && [ "$arch" != "$(host_arch)" ]; then
        die "this bundle was built for $arch but this host is $(host_arch): use the release's bundle for $(host_arch)"
    fi
    glibc=$(info glibc)
    host=$(host_glibc)
    if [ -n "$glibc" ] && [ -n "$host" ] && version_lt "$host" "$glibc"; then
        die "this bundle needs glibc >= $glibc, this host has $host: use a newer OS release"
    fi
    need_space "$PREFIX" $(($(du -sk "$BUNDLE" | cut -f1) * 4)) "the new release in $PREFIX"
}

# ---------------------------------------------------------------------------------------------
# The installed state: which release is current, which came before, the pre-upgrade backup.

state() {  # a field of $STATE
    [ -f "$STATE" ] && sed -n "s/^$1=//p" "$STATE" | head -n 1
    return 0
}

write_state() {  # key=value lines on stdin replace the state file atomically
    if [ "$DRY_RUN" = 1 ]; then
        say "+ write $STATE"
        cat >/dev/null
        return 0
    fi
    cat >"$STATE.tmp"
    chmod 0644 "$STATE.tmp"
    mv "$STATE.tmp" "$STATE"
}

# The running program: the release `current` points at, or a legacy install whose venv is $PREFIX.
installed_vigatra() {
    if [ -x "$CURRENT/bin/vigatra" ]; then
        echo "$CURRENT/bin/vigatra"
    elif [ -x "$PREFIX/bin/vigatra" ]; then
        echo "$PREFIX/bin/vigatra"
    fi
}

installed_version() {
    found=$(state current_version)
    if [ -z "$found" ] && [ -x "$PREFIX/bin/python" ]; then
        found=$("$PREFIX/bin/python" -c 'import importlib.metadata as m; print(m.version("vigatra"))' 2>/dev/null || true)
    fi
    echo "$found"
}

# The database's schema revision, read by the given program (any release prints "current: <rev> ...").
# A read: it runs in --dry-run too, so the dry run refuses what the real run would.
db_revision() {
    (umask 077 && runuser -u "$SERVICE_USER" -- env -i PATH="$SAFE_PATH" HOME="$DATA" LANG=C.UTF-8 \
        "$1" --config "$ETC/vigatra.yaml" db current 2>/dev/null) | sed -n 's/^current: \([^ ]*\).*$/\1/p'
}

# ---------------------------------------------------------------------------------------------
# Undo: what a failed first install created is removed again, newest first.

CREATED=
created() {  # remember something this run created: "kind:path"
    CREATED="$1 $CREATED"
}

undo() {
    [ -n "$CREATED" ] || return 0
    warn "the install failed: removing what it created"
    for item in $CREATED; do
        kind=${item%%:*}
        what=${item#*:}
        case $kind in
            unit) systemctl disable "$SERVICE" >/dev/null 2>&1 || true; rm -f "$what" ;;
            dir) rm -rf "$what" ;;
            file) rm -f "$what" ;;
            user) userdel "$what" 2>/dev/null || true ;;
            group) groupdel "$what" 2>/dev/null || true ;;
        esac
        say "removed $what"
    done
    CREATED=
    systemctl daemon-reload 2>/dev/null || true
}

on_exit() {
    status=$?
    if [ "$status" != 0 ] && [ "$DRY_RUN" = 0 ]; then
        if [ "$MODE" = install ]; then
            undo
        elif [ "$MODE" = upgrade ] && [ -n "${UPGRADE_STAGE:-}" ]; then
            undo_upgrade
        fi
    fi
    [ -z "$WORK" ] || rm -rf "$WORK"
    exit "$status"
}

# ---------------------------------------------------------------------------------------------
# Actions.

create_user() {
    step "system user and group $SERVICE_USER"
    if getent group "$SERVICE_USER" >/dev/null; then
        say "group $SERVICE_USER exists"
    else
        run groupadd --system "$SERVICE_USER"
        created "group:$SERVICE_USER"
    fi
    if getent passwd "$SERVICE_USER" >/dev/null; then
        say "user $SERVICE_USER exists"
    else
        run useradd --system --gid "$SERVICE_USER" --home-dir "$DATA" --no-create-home \
            --shell /usr/sbin/nologin --comment "Vigatra appliance" "$SERVICE_USER"
        created "user:$SERVICE_USER"
    fi
}

make_dir() {  # mode owner group path
    [ -d "$4" ] || created "dir:$4"
    run install -d -m "$1" -o "$2" -g "$3" "$4"
}

create_directories() {
    step "directories"
    # Config: root writes it, the service reads it (group), nobody else sees it.
    make_dir 0750 root "$SERVICE_USER" "$ETC"
    # Encrypted credentials: only systemd (root) reads them, when it starts the service.
    make_dir 0700 root root "$CREDS"
    make_dir 0700 "$SERVICE_USER" "$SERVICE_USER" "$DATA"
    # Upgrade backups: written by the service user (encrypted, files 0600), outside the data dir.
    make_dir 0700 "$SERVICE_USER" "$SERVICE_USER" "$BACKUPS"
    make_dir 0755 root root "$PREFIX"
    make_dir 0755 root root "$RELEASES"
}

pin_trust_key() {
    if [ -n "$TRUST_KEY" ] && ! cmp -s "$TRUST_KEY" "$PINNED_KEY" 2>/dev/null; then
        [ -f "$PINNED_KEY" ] || created "file:$PINNED_KEY"
        run install -m 0644 -o root -g root "$TRUST_KEY" "$PINNED_KEY"
        say "pinned the release key in $PINNED_KEY: later upgrades must be signed by it"
    fi
}

# pip without the host's pip.conf, PIP_* variables or cache: only the bundle's files count.
pip_offline() {  # $1 venv, then pip arguments
    venv=$1
    shift
    run env -i PATH="$SAFE_PATH" PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$venv/bin/python" -m pip --quiet "$@"
}

build_release() {
    NEW=$RELEASES/$VERSION
    step "program: release $VERSION in $NEW"
    if [ -f "$NEW/.vigatra-release" ] && [ "$(readlink "$CURRENT" 2>/dev/null)" = "releases/$VERSION" ]; then
        say "release $VERSION is installed and current; checking the database and the unit only"
        return 0
    fi
    # An unfinished or rolled-back-from build of this version: nothing runs from it.
    if [ -e "$NEW" ]; then
        run rm -rf "$NEW"
    fi
    created "dir:$NEW"
    UPGRADE_STAGE=built
    run "$PYTHON" -m venv "$NEW"
    # Exact versions, each file checked against the lock's hashes, nothing from the network.
    pip_offline "$NEW" install --no-index --find-links "$BUNDLE/offline-wheels" --only-binary=:all: \
        --require-hashes -r "$BUNDLE/offline-wheels/requirements.lock"
    # The appliance itself: its hash is in the signed SHA256SUMS; its dependencies are the lock.
    pip_offline "$NEW" install --no-index --no-deps "$APP_WHEEL"
    pip_offline "$NEW" check
    run install -d -m 0755 "$NEW/share/vigatra"
    run cp -R "$BUNDLE/README.md" "$BUNDLE/BUNDLE-INFO" "$BUNDLE/config" "$BUNDLE/packaging" "$BUNDLE/systemd" \
        "$NEW/share/vigatra/"
    [ ! -f "$BUNDLE/sbom.cdx.json" ] || run cp "$BUNDLE/sbom.cdx.json" "$NEW/share/vigatra/"
    if [ "$DRY_RUN" = 1 ]; then
        say "+ echo $VERSION > $NEW/.vigatra-release"
    else
        printf '%s\n' "$VERSION" >"$NEW/.vigatra-release"
    fi
}

switch_current() {  # $1: the release directory relative to $PREFIX ("releases/<v>", or "." for legacy)
    step "switching $CURRENT to $1"
    run ln -sfn "$1" "$CURRENT.new"
    run mv -T "$CURRENT.new" "$CURRENT"
}

# Generate secret material through pipes only: the plaintext KEK never lies on disk (systemd
# provider) and never appears in this script's output or in a process's arguments.
create_systemd_kek() {
    cred=$CREDS/vigatra-kek.cred
    if [ -e "$cred" ]; then
        say "keeping the existing encrypted KEK $cred"
        return 0
    fi
    if [ "$DRY_RUN" = 1 ]; then
        say "+ head -c 32 /dev/urandom | base64 | systemd-creds encrypt --name=vigatra-kek - $cred"
        return 0
    fi
    created "file:$cred"
    (umask 077 && head -c 32 /dev/urandom | base64 | systemd-creds encrypt --name=vigatra-kek - "$cred")
    say "created the encrypted KEK $cred"
}

create_key_file() {
    if [ -e "$KEY_FILE" ]; then
        say "keeping the existing KEK file $KEY_FILE"
        return 0
    fi
    if [ "$DRY_RUN" = 1 ]; then
        say "+ head -c 32 /dev/urandom | base64 > $KEY_FILE (mode 0400, owner $SERVICE_USER)"
        return 0
    fi
    [ -d "$(dirname "$KEY_FILE")" ] || die "directory $(dirname "$KEY_FILE") for --key-file does not exist"
    created "file:$KEY_FILE"
    (umask 077 && head -c 32 /dev/urandom | base64 >"$KEY_FILE")
    chown "$SERVICE_USER:$SERVICE_USER" "$KEY_FILE"
    chmod 0400 "$KEY_FILE"
    say "created the KEK file $KEY_FILE"
}

create_pkcs11_pin() {
    cred=$CREDS/vigatra-pkcs11-pin.cred
    if [ -n "$PKCS11_PIN_FILE" ]; then
        [ "$DRY_RUN" = 1 ] || [ -f "$PKCS11_PIN_FILE" ] || die "--pkcs11-pin-file $PKCS11_PIN_FILE does not exist"
        return 0
    fi
    if [ "$PKCS11_PIN_STDIN" = 1 ]; then
        if [ "$DRY_RUN" = 1 ]; then
            say "+ systemd-creds encrypt --name=vigatra-pkcs11-pin - $cred  (PIN read from standard input)"
            return 0
        fi
        created "file:$cred"
        if [ -t 0 ]; then  # typed at a terminal: do not echo it (or leave it in the scrollback)
            printf 'PKCS#11 user PIN: ' >&2
            stty -echo
            IFS= read -r pin || pin=
            stty echo
            printf '\n' >&2
            printf '%s' "$pin" | (umask 077 && systemd-creds encrypt --name=vigatra-pkcs11-pin - "$cred")
            pin=
        else
            (umask 077 && systemd-creds encrypt --name=vigatra-pkcs11-pin - "$cred")
        fi
        return 0
    fi
    [ -e "$cred" ] || [ "$DRY_RUN" = 1 ] ||
        die "pkcs11 needs the token's user PIN: pass --pkcs11-pin-file PATH or --pkcs11-pin-stdin"
}

create_keys() {
    step "key-encryption key ($KEY_PROVIDER provider)"
    case $KEY_PROVIDER in
        systemd) create_systemd_kek ;;
        file) create_key_file ;;
        pkcs11) create_pkcs11_pin ;;
    esac
}

# The encrypted credential the service (and `vigatra init`) needs, as a systemd property; empty
# when the key comes from a file. A first run knows it from the options; later runs (whose key
# options are not given again) from the credential files the first run made.
credential_property() {
    if [ "$MODE" != install ]; then
        for name in vigatra-kek vigatra-pkcs11-pin; do
            if [ -f "$CREDS/$name.cred" ]; then
                printf '%s\n' "LoadCredentialEncrypted=$name:$CREDS/$name.cred"
                return 0
            fi
        done
        return 0
    fi
    case $KEY_PROVIDER in
        systemd) printf '%s\n' "LoadCredentialEncrypted=vigatra-kek:$CREDS/vigatra-kek.cred" ;;
        pkcs11)
            if [ -z "$PKCS11_PIN_FILE" ]; then
                printf '%s\n' "LoadCredentialEncrypted=vigatra-pkcs11-pin:$CREDS/vigatra-pkcs11-pin.cred"
            fi
            ;;
    esac
}

# Run a program (a release's vigatra) as the service user with a clean environment and the service's umask.
as_service_user_with() {
    program=$1
    shift
    (umask 077 && run runuser -u "$SERVICE_USER" -- env -i PATH="$SAFE_PATH" HOME="$DATA" LANG=C.UTF-8 \
        "$program" "$@")
}

# The same, with the key: a systemd credential is visible only inside a unit, so when the key
# comes from one, the command runs as a transient unit that loads it, like the service does.
as_service_with_key() {
    program=$1
    shift
    property=$(credential_property)
    if [ -z "$property" ]; then
        as_service_user_with "$program" "$@"
        return $?
    fi
    run systemd-run --quiet --wait --pipe --collect --service-type=exec --description="vigatra $1" \
        --uid="$SERVICE_USER" --gid="$SERVICE_USER" -p UMask=0077 -p WorkingDirectory="$DATA" \
        -p "$property" "$program" "$@"
}

initialise() {
    step "initialising the appliance (configuration, database, first admin)"
    set -- init --data-dir "$DATA" --admin-username "$ADMIN_USERNAME" --key-provider "$KEY_PROVIDER" --yes
    [ -z "$DB_URL" ] || set -- "$@" --database-url "$DB_URL"
    [ -z "$PUBLIC_URL" ] || set -- "$@" --public-url "$PUBLIC_URL"
    case $KEY_PROVIDER in
        file) set -- "$@" --key-file "$KEY_FILE" ;;
        pkcs11)
            set -- "$@" --pkcs11-token "$PKCS11_TOKEN" --pkcs11-key-label "$PKCS11_KEY_LABEL"
            [ -z "$PKCS11_MODULE" ] || set -- "$@" --pkcs11-module "$PKCS11_MODULE"
            [ -z "$PKCS11_PIN_FILE" ] || set -- "$@" --pkcs11-pin-file "$PKCS11_PIN_FILE"
            ;;
    esac
    created "file:$ETC/vigatra.yaml"
    # init prints the admin's one-time password; it goes to the terminal once and nowhere else.
    printf '\n---------------------------------------------------------------------------\n'
    as_service_with_key "$NEW/bin/vigatra" "$@"
    printf -- '---------------------------------------------------------------------------\n'
    if [ "$DRY_RUN" = 0 ]; then
        say "Write the admin password down now: it is not stored anywhere and is shown only once."
    fi
    adopt_config
}

# `vigatra init` writes the config into the data dir; the service reads it from $ETC, where
# root owns it and the service (which may write only its data dir) cannot change it.
adopt_config() {
    run install -m 0640 -o root -g "$SERVICE_USER" "$DATA/vigatra.yaml" "$ETC/vigatra.yaml"
    run rm -f "$DATA/vigatra.yaml"
}

# An upgrade takes no key options: the provider is the one `vigatra init` wrote (keys.provider,
# indented two spaces under keys:). Only messages depend on it; the settings' default is file.
detect_provider() {
    config=$ETC/vigatra.yaml
    [ -f "$config" ] || config=$DATA/vigatra.yaml
    found=$(sed -n 's/^  provider: *\([a-z0-9]*\).*$/\1/p' "$config" | head -n 1)
    KEY_PROVIDER=${found:-file}
}

# Refuse a bundle older than what is installed, or one that does not know the database's schema,
# in one line and before anything changed.
check_not_older() {
    installed=$(installed_version)
    program=$(installed_vigatra)
    if [ -n "$installed" ] && version_lt "$VERSION" "$installed"; then
        die "this bundle is Vigatra $VERSION, older than the installed $installed: refusing to downgrade; to go back use install.sh --rollback"
    fi
    [ -n "$program" ] || return 0
    revision=$(db_revision "$program" || true)
    known=$(info schema_revisions)
    if [ -n "$revision" ] && [ "$revision" != none ] && [ -n "$known" ]; then
        case " $known " in
            *" $revision "*) ;;
            *) die "this bundle (Vigatra $VERSION) does not know the database's schema revision $revision, which a newer release made: refusing to install it over that database; to go back use install.sh --rollback" ;;
        esac
    fi
    PREVIOUS_REVISION=$revision
}

backup_before_upgrade() {
    step "encrypted backup before the upgrade (online) into $BACKUPS"
    make_dir 0700 "$SERVICE_USER" "$SERVICE_USER" "$BACKUPS"
    # The new release takes it: it knows the backup format whatever the running release is, and it
    # is the one that restores it if this upgrade is rolled back.
    if [ "$DRY_RUN" = 1 ]; then
        as_service_with_key "$NEW/bin/vigatra" --config "$ETC/vigatra.yaml" backup create --dest "$BACKUPS" \
            --origin upgrade --print-path
        UPGRADE_BACKUP="$BACKUPS/vigatra-backup-<time>"
        return 0
    fi
    out=$(as_service_with_key "$NEW/bin/vigatra" --config "$ETC/vigatra.yaml" backup create --dest "$BACKUPS" \
        --origin upgrade --print-path) || die "the pre-upgrade backup failed; nothing was changed (see the message above)"
    UPGRADE_BACKUP=$(printf '%s\n' "$out" | tail -n 1)
    say "backup: $UPGRADE_BACKUP"
}

stop_service() {
    WAS_ACTIVE=0
    if systemctl is-active --quiet "$SERVICE" 2>/dev/null; then
        WAS_ACTIVE=1
        step "stopping $SERVICE"
        run systemctl stop "$SERVICE"
    fi
}

migrate_database() {  # $1 program
    step "migrating the database schema"
    # Schema changes need no key.
    as_service_user_with "$1" --config "$ETC/vigatra.yaml" db upgrade
}

install_unit() {
    step "systemd unit"
    unit=$UNIT_DIR/$SERVICE
    [ -f "$unit" ] || created "unit:$unit"
    if [ "$DRY_RUN" = 1 ]; then
        say "+ sed 's#/opt/vigatra#$PREFIX#g' $BUNDLE/systemd/$SERVICE > $unit"
    else
        sed "s#/opt/vigatra#$PREFIX#g; s#/var/backups/vigatra#$BACKUPS#g" "$BUNDLE/systemd/$SERVICE" >"$unit.tmp"
        chmod 0644 "$unit.tmp"
        mv "$unit.tmp" "$unit"
    fi
    if [ "$MODE" = install ]; then
        install_key_dropins
    fi
}

# Drop-ins adapt the unit to the key provider. Written on the first run only: afterwards they
# belong to the admin (`systemctl edit vigatra`), and an upgrade leaves them alone.
install_key_dropins() {
    dropins=$UNIT_DIR/$SERVICE.d
    case $KEY_PROVIDER in
        file)
            [ -d "$dropins" ] || created "dir:$dropins"
            run install -D -m 0644 "$BUNDLE/systemd/key-provider-file.conf" "$dropins/10-key-provider.conf"
            ;;
        pkcs11)
            [ -d "$dropins" ] || created "dir:$dropins"
            run install -D -m 0644 "$BUNDLE/systemd/key-provider-pkcs11.conf" "$dropins/10-key-provider.conf"
            property=$(credential_property)
            if [ -n "$property" ]; then
                if [ "$DRY_RUN" = 1 ]; then
                    say "+ printf '[Service]\\n$property\\n' > $dropins/11-pkcs11-pin.conf"
                else
                    printf '[Service]\n%s\n' "$property" >"$dropins/11-pkcs11-pin.conf"
                    chmod 0644 "$dropins/11-pkcs11-pin.conf"
                fi
            fi
            ;;
    esac
}

start_service() {
    run systemctl daemon-reload
    run systemctl enable "$SERVICE"
    if [ "$START" = 0 ]; then
        say "not started (--no-start): systemctl start $SERVICE"
        return 0
    fi
    run systemctl restart "$SERVICE"
    if [ "$DRY_RUN" = 0 ]; then
        sleep 3
        systemctl is-active --quiet "$SERVICE" ||
            die "$SERVICE did not stay up; see: journalctl -u $SERVICE -n 50 --no-pager"
        say "$SERVICE is running"
    fi
}

# Releases beyond the newest $KEEP_RELEASES (never the current or previous one) are removed.
prune_releases() {
    keep=$KEEP_RELEASES
    current=$(readlink "$CURRENT" 2>/dev/null || true)
    previous=$(state previous)
    # shellcheck disable=SC2012  # plain version names, listed by version order
    ls -1 "$RELEASES" 2>/dev/null | sort -V -r | while IFS= read -r release; do
        if [ "$keep" -gt 0 ]; then
            keep=$((keep - 1))
            continue
        fi
        case "releases/$release" in
            "$current"|"$previous") continue ;;
        esac
        run rm -rf "${RELEASES:?}/$release"
    done
}

# ---------------------------------------------------------------------------------------------
# Upgrade and its undo.

undo_upgrade() {
    case $UPGRADE_STAGE in
        built)  # nothing ran from the new release yet
            warn "the upgrade failed before the switch: removing release $VERSION; $SERVICE stays on $PREVIOUS"
            rm -rf "$NEW"
            if [ "${WAS_ACTIVE:-0}" = 1 ]; then systemctl start "$SERVICE" || true; fi
            ;;
        migrated|switched)
            warn "the upgrade failed after the database was migrated: rolling back to $PREVIOUS"
            UPGRADE_STAGE=
            rollback_to "$PREVIOUS" "$PREVIOUS_REVISION" "$UPGRADE_BACKUP" "$NEW/bin/vigatra" || true
            ;;
    esac
    UPGRADE_STAGE=
}

upgrade() {
    PREVIOUS=$(readlink "$CURRENT" 2>/dev/null || true)
    if [ -z "$PREVIOUS" ] && [ -f "$PREFIX/pyvenv.cfg" ]; then
        PREVIOUS=.  # a legacy install: $PREFIX itself is the venv
    fi
    build_release
    if [ "$PREVIOUS" = "releases/$VERSION" ]; then
        migrate_database "$NEW/bin/vigatra"
        install_unit
        start_service
        UPGRADE_STAGE=
        return 0
    fi
    backup_before_upgrade
    stop_service
    UPGRADE_STAGE=migrated
    migrate_database "$NEW/bin/vigatra"
    install_unit
    switch_current "releases/$VERSION"
    UPGRADE_STAGE=switched
    start_service
    UPGRADE_STAGE=
    write_state <<EOF
current=releases/$VERSION
current_version=$VERSION
previous=$PREVIOUS
previous_version=${INSTALLED_VERSION}
previous_revision=${PREVIOUS_REVISION:-}
upgrade_backup=${UPGRADE_BACKUP:-}
EOF
    prune_releases
}

# ---------------------------------------------------------------------------------------------
# Rollback: $1 release dir (relative to $PREFIX), $2 its schema revision, $3 the pre-upgrade backup,
# $4 the program (newest release) that restores it when the schema moved.

rollback_to() {
    target=$1
    want_revision=$2
    backup=$3
    program=$4
    [ -x "$PREFIX/$target/bin/vigatra" ] || die "the previous release $PREFIX/$target is gone; cannot roll back"
    stop_service
    revision=$(db_revision "$program" || true)
    if [ -n "$want_revision" ] && [ -n "$revision" ] && [ "$revision" != "$want_revision" ]; then
        step "the upgrade changed the schema ($want_revision -> $revision): restoring the pre-upgrade backup"
        if [ -z "$backup" ] || [ ! -d "$backup" ]; then
            die "the pre-upgrade backup ${backup:-(none recorded)} is missing; cannot restore schema $want_revision"
        fi
        # What happened since the upgrade is kept too: a backup of the database being replaced.
        as_service_with_key "$program" --config "$ETC/vigatra.yaml" backup create --dest "$BACKUPS" --origin upgrade ||
            die "could not back up the current database before the rollback; nothing was changed"
        as_service_with_key "$program" --config "$ETC/vigatra.yaml" backup restore "$backup" --no-upgrade ||
            die "restoring $backup failed; the current release is unchanged (see above)"
    fi
    switch_current "$target"
    install_unit
    start_service
}

rollback() {
    MODE=rollback
    previous=$(state previous)
    [ -n "$previous" ] ||
        die "nothing to roll back to: no previous release is recorded in $STATE (the last run was a first install or a rollback)"
    current=$(state current)
    program=$CURRENT/bin/vigatra
    [ -x "$program" ] || die "the current release is missing ($CURRENT); reinstall it with install.sh"
    detect_provider
    BUNDLE=$CURRENT/share/vigatra
    say "Vigatra: rolling back from $(state current_version) to $(state previous_version) (${previous})"
    rollback_to "$previous" "$(state previous_revision)" "$(state upgrade_backup)" "$program"
    write_state <<EOF
current=$previous
current_version=$(state previous_version)
rolled_back_from=$current
rolled_back_from_version=$(state current_version)
EOF
    say "Rolled back to $(state current_version). Release $(state rolled_back_from_version) stays in $PREFIX/$current until the next upgrade."
}

# ---------------------------------------------------------------------------------------------
# Uninstall.

uninstall() {
    MODE=uninstall
    if [ "$PURGE" = 1 ] && [ "$YES" = 0 ]; then
        die "--purge deletes the database, the keys and the backups for good: add --yes to confirm"
    fi
    step "stopping and removing $SERVICE"
    if systemctl is-active --quiet "$SERVICE" 2>/dev/null; then run systemctl stop "$SERVICE"; fi
    run systemctl disable "$SERVICE" 2>/dev/null || true
    run rm -rf "$UNIT_DIR/$SERVICE" "$UNIT_DIR/$SERVICE.d"
    run systemctl daemon-reload
    step "removing the program"
    run rm -rf "$PREFIX"
    if [ "$PURGE" = 1 ]; then
        step "purging data, keys, configuration, backups and the $SERVICE_USER user"
        keyfile=$(sed -n 's/^  file_path: *//p' "$ETC/vigatra.yaml" 2>/dev/null | head -n 1)
        run rm -rf "$DATA" "$BACKUPS" "$ETC"
        case $keyfile in
            /*) run rm -f "$keyfile" ;;
        esac
        if getent passwd "$SERVICE_USER" >/dev/null; then run userdel "$SERVICE_USER"; fi
        if getent group "$SERVICE_USER" >/dev/null; then run groupdel "$SERVICE_USER" 2>/dev/null || true; fi
        say "Purged. A PostgreSQL database (database.url) is not dropped: drop it yourself if you want it gone."
        return 0
    fi
    say ""
    say "Uninstalled the program. Left in place (install.sh --uninstall --purge --yes removes them):"
    for kept in "$ETC/vigatra.yaml" "$CREDS" "$PINNED_KEY" "$DATA" "$BACKUPS"; do
        if [ -e "$kept" ]; then say "  $kept"; fi
    done
    keyfile=$(sed -n 's/^  file_path: *//p' "$ETC/vigatra.yaml" 2>/dev/null | head -n 1)
    if [ -n "$keyfile" ] && [ -e "$keyfile" ]; then say "  $keyfile (the KEK)"; fi
    if getent passwd "$SERVICE_USER" >/dev/null; then say "  the system user $SERVICE_USER"; fi
    say "A reinstall with the same key finds the data again."
}

# ---------------------------------------------------------------------------------------------

next_steps() {
    doctor="$CURRENT/bin/vigatra --config $ETC/vigatra.yaml doctor"
    check="Check: systemctl status $SERVICE ; curl -s http://127.0.0.1:8080/healthz ; $doctor   (as root: it
      reads the KEK credential the way the unit does)"
    if [ "$MODE" = upgrade ]; then
        printf '\nUpgraded to %s. Backup taken before the upgrade: %s\nTo go back: %s --rollback\n%s\n' \
            "$VERSION" "${UPGRADE_BACKUP:-none (same release)}" "$0" "$check"
        return 0
    fi
    cat <<EOF

Next steps
 1. TLS front: the appliance listens on 127.0.0.1:8080 only. Put nginx or Caddy in front:
      $CURRENT/share/vigatra/packaging/nginx/vigatra.conf  -> /etc/nginx/sites-available/vigatra
      $CURRENT/share/vigatra/packaging/caddy/Caddyfile     -> /etc/caddy/Caddyfile
    Set your host name and certificate paths in it (a name, not an IP: HSTS needs one).
 2. Set server.public_url (https://<that name>) in $ETC/vigatra.yaml if you did not pass
    --public-url, then: systemctl restart $SERVICE
 3. Keep a copy of the key-encryption key offline: without it a restored backup cannot be read.
EOF
    case $KEY_PROVIDER in
        systemd) say "      systemd-creds decrypt --name=vigatra-kek $CREDS/vigatra-kek.cred -   (prints it once)" ;;
        file) say "      copy $KEY_FILE to offline media" ;;
        pkcs11) say "      the HSM holds it: follow your HSM's backup procedure" ;;
    esac
    cat <<EOF
 4. Scheduled backups: set backup.dest: $BACKUPS in $ETC/vigatra.yaml (and copy them off the host)
 5. $check
 6. Sign in at https://<that name>/login as '$ADMIN_USERNAME' with the one-time password printed
    above; you must change it at first sign-in.
EOF
}

main() {
    parse_args "$@"
    PATH=$SAFE_PATH
    export PATH
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/vigatra-install.XXXXXX")
    trap on_exit EXIT
    trap 'exit 130' INT TERM
    check_root
    check_systemd
    case $ACTION in
        rollback) [ "$DRY_RUN" = 0 ] || die "--rollback has no dry run"; rollback; return 0 ;;
        uninstall) uninstall; return 0 ;;
    esac
    check_prefix
    check_python
    locate_bundle
    check_bundle
    if [ -f "$ETC/vigatra.yaml" ] || [ -f "$DATA/vigatra.yaml" ]; then
        MODE=upgrade
        detect_provider
        INSTALLED_VERSION=$(installed_version)
        check_not_older
    else
        MODE=install
    fi
    [ "$DRY_RUN" = 0 ] || say "dry run: every check ran; printing the actions, changing nothing"
    say "Vigatra $VERSION: $MODE from $BUNDLE into $RELEASES/$VERSION"
    if [ "$MODE" = upgrade ] && [ -n "$DB_URL$PUBLIC_URL" ]; then
        warn "--db-url and --public-url apply to a first install only; edit $ETC/vigatra.yaml instead"
    fi
    create_user
    create_directories
    pin_trust_key
    if [ "$MODE" = install ]; then
        build_release
        create_keys
        initialise
        install_unit
        switch_current "releases/$VERSION"
        start_service
        write_state <<EOF
current=releases/$VERSION
current_version=$VERSION
EOF
        CREATED=
    else
        if [ -f "$DATA/vigatra.yaml" ] && [ ! -f "$ETC/vigatra.yaml" ]; then
            adopt_config  # a first run stopped right after init: finish it
        fi
        upgrade
    fi
    next_steps
}

main "$@"
