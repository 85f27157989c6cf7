#!/bin/sh
# Install or upgrade the Vigatra appliance from the offline bundle this script sits in.
#
# Runs as root on Debian 12+ / Ubuntu 24.04+ (python3 >= 3.11, systemd >= 250 for encrypted
# credentials), without network access: everything it installs comes from the bundle
# (packaging/build-bundle.sh makes it). A first run installs and initialises; any later run
# upgrades (new code, `vigatra db upgrade`) and keeps config, data and keys.
# `install.sh --help` lists the options; --dry-run prints every action without doing it.
set -eu
umask 022  # the venv and unit must be readable by the service user; secrets set their own umask

PREFIX=/opt/vigatra
ETC=/etc/vigatra
DATA=/var/lib/vigatra
CREDS=$ETC/credentials
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
START=1
DRY_RUN=0
# A clean PATH for everything we run, whatever the admin's shell had.
SAFE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
BUNDLE=$(cd "$(dirname "$0")" && pwd)

usage() {
    cat <<EOF
Usage: install.sh [OPTIONS]

Install or upgrade the Vigatra appliance from this offline bundle. Run as root.
First run: creates the vigatra user, $PREFIX (a Python venv), $ETC and
$DATA, the key-encryption key, the database and the first admin (whose one-time
password is printed once), then installs, enables and starts $SERVICE.
Later runs upgrade in place: new program, database migrations, restart.

Options:
  --prefix DIR             where the program goes (default: $PREFIX)
  --python PATH            Python >= 3.11 to build the venv with (default: $PYTHON)
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
  --dry-run                print what would be done, change nothing (root not needed)
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
            --prefix) need_value "$@"; PREFIX=$2; shift 2 ;;
            --python) need_value "$@"; PYTHON=$2; shift 2 ;;
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
    # PREFIX ends up in the unit file and in sed: keep it to plain path characters.
    case $PREFIX in
        /*) ;;
        *) usage_error "--prefix must be an absolute path" ;;
    esac
    case $PREFIX in
        *[!A-Za-z0-9/._-]*) usage_error "--prefix may hold only letters, digits and / . _ -" ;;
    esac
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
    # A password in the URL would be on the command line of `vigatra init` (visible in ps, and in the
    # journal as a transient unit's name) and in the configuration file.
    case $DB_URL in
        *://*:*@*) usage_error "--db-url must not carry a password: use peer authentication (host=/run/postgresql) or ~vigatra/.pgpass" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Checks: read-only, so they run in --dry-run too.

check_environment() {
    if [ "$(id -u)" != 0 ] && [ "$DRY_RUN" = 0 ]; then
        die "must run as root: it creates a system user, $PREFIX, $ETC and a systemd unit (try: sudo $0 ...)"
    fi
    # The service cannot see these (ProtectHome=, PrivateTmp=, a tmpfs /run).
    case $PREFIX in
        /home/*|/root/*|/tmp/*|/var/tmp/*|/run/*)
            if [ "$DRY_RUN" = 0 ]; then
                die "--prefix $PREFIX is hidden from the hardened service; use a path under /opt or /usr/local"
            fi
            warn "--prefix $PREFIX would be refused by a real run (the hardened service cannot see it)"
            ;;
    esac
    for tool in sha256sum getent runuser systemctl; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing; this script needs a systemd-based Debian/Ubuntu"
    done
    if [ "$KEY_PROVIDER" = systemd ] || [ "$PKCS11_PIN_STDIN" = 1 ]; then
        command -v systemd-creds >/dev/null 2>&1 ||
            die "systemd-creds is missing (systemd >= 250 is needed for encrypted credentials); use --key-provider file"
    fi
}

check_bundle() {
    [ -f "$BUNDLE/SHA256SUMS" ] ||
        die "$BUNDLE is not an offline bundle (no SHA256SUMS); build one with packaging/build-bundle.sh"
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
}

check_python() {
    [ -x "$PYTHON" ] || die "$PYTHON not found: install python3 (>= 3.11) or pass --python"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is older than 3.11"
    # Debian and Ubuntu ship venv's pip bootstrap separately.
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
        die "$PYTHON cannot create a venv: apt-get install python3-venv"
    have=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    # The bundle's binary wheels are built for one Python version (BUNDLE-INFO says which).
    want=$(sed -n 's/^python=//p' "$BUNDLE/BUNDLE-INFO" 2>/dev/null || true)
    if [ -n "$want" ] && [ "$want" != "$have" ]; then
        die "this bundle was built for Python $want but $PYTHON is $have: build the bundle with Python $have"
    fi
}

# ---------------------------------------------------------------------------------------------
# Actions.

create_user() {
    step "system user and group $SERVICE_USER"
    if getent group "$SERVICE_USER" >/dev/null; then
        say "group $SERVICE_USER exists"
    else
        run groupadd --system "$SERVICE_USER"
    fi
    if getent passwd "$SERVICE_USER" >/dev/null; then
        say "user $SERVICE_USER exists"
    else
        run useradd --system --gid "$SERVICE_USER" --home-dir "$DATA" --no-create-home \
            --shell /usr/sbin/nologin --comment "Vigatra appliance" "$SERVICE_USER"
    fi
}

create_directories() {
    step "directories"
    # Config: root writes it, the service reads it (group), nobody else sees it.
    run install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC"
    # Encrypted credentials: only systemd (root) reads them, when it starts the service.
    run install -d -m 0700 -o root -g root "$CREDS"
    run install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$DATA"
}

stop_service() {
    if systemctl is-active --quiet "$SERVICE" 2>/dev/null; then
        step "stopping $SERVICE for the upgrade"
        run systemctl stop "$SERVICE"
    fi
}

# pip without the host's pip.conf, PIP_* variables or cache: only the bundle's files count.
pip_offline() {
    run env -i PATH="$SAFE_PATH" PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$PREFIX/bin/python" -m pip --quiet "$@"
}

install_program() {
    step "program in $PREFIX"
    # `venv --clear` empties the directory: never do that to something that is not our venv.
    if [ -d "$PREFIX" ] && [ ! -f "$PREFIX/pyvenv.cfg" ] && [ -n "$(ls -A "$PREFIX")" ]; then
        die "$PREFIX exists, is not empty and is not a Python venv; refusing to clear it"
    fi
    run "$PYTHON" -m venv --clear "$PREFIX"
    # Exact versions, each file checked against the lock's hashes, nothing from the network.
    pip_offline install --no-index --find-links "$BUNDLE/offline-wheels" --only-binary=:all: \
        --require-hashes -r "$BUNDLE/offline-wheels/requirements.lock"
    # The appliance itself: its hash is in SHA256SUMS, checked above; its dependencies are the lock.
    pip_offline install --no-index --no-deps "$APP_WHEEL"
    pip_offline check
    run install -d -m 0755 "$PREFIX/share/vigatra"
    run cp -R "$BUNDLE/README.md" "$BUNDLE/config" "$BUNDLE/packaging" "$BUNDLE/systemd" "$PREFIX/share/vigatra/"
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
# when the key comes from a file. A first run knows it from the options; an upgrade (whose key
# options are not given again) from the credential files the first run made.
credential_property() {
    if [ "$MODE" = upgrade ]; then
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

# Run a vigatra command as the service user with a clean environment and the service's umask.
as_service_user() {
    (umask 077 && run runuser -u "$SERVICE_USER" -- env -i PATH="$SAFE_PATH" HOME="$DATA" LANG=C.UTF-8 \
        "$PREFIX/bin/vigatra" "$@")
}

# The same, with the key: a systemd credential is visible only inside a unit, so when the key
# comes from one, the command runs as a transient unit that loads it, like the service does.
as_service_with_key() {
    property=$(credential_property)
    if [ -z "$property" ]; then
        as_service_user "$@"
        return 0
    fi
    run systemd-run --quiet --wait --pipe --collect --service-type=exec --description="vigatra $1" \
        --uid="$SERVICE_USER" --gid="$SERVICE_USER" -p UMask=0077 -p WorkingDirectory="$DATA" \
        -p "$property" "$PREFIX/bin/vigatra" "$@"
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
    # init prints the admin's one-time password; it goes to the terminal once and nowhere else.
    printf '\n---------------------------------------------------------------------------\n'
    as_service_with_key "$@"
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

upgrade_database() {
    step "upgrading the database schema"
    if [ -f "$DATA/vigatra.yaml" ] && [ ! -f "$ETC/vigatra.yaml" ]; then
        # A first run stopped right after init: finish it.
        adopt_config
    fi
    # Schema changes need no key.
    as_service_user --config "$ETC/vigatra.yaml" db upgrade
}

install_unit() {
    step "systemd unit"
    unit=$UNIT_DIR/$SERVICE
    if [ "$DRY_RUN" = 1 ]; then
        say "+ sed 's#/opt/vigatra#$PREFIX#g' $BUNDLE/systemd/$SERVICE > $unit"
    else
        sed "s#/opt/vigatra#$PREFIX#g" "$BUNDLE/systemd/$SERVICE" >"$unit.tmp"
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
            run install -D -m 0644 "$BUNDLE/systemd/key-provider-file.conf" "$dropins/10-key-provider.conf"
            ;;
        pkcs11)
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

enable_and_start() {
    step "enabling $SERVICE"
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

next_steps() {
    doctor="runuser -u $SERVICE_USER -- $PREFIX/bin/vigatra --config $ETC/vigatra.yaml doctor"
    property=$(credential_property)
    if [ -n "$property" ]; then
        doctor="systemd-run --quiet --wait --pipe --collect --uid=$SERVICE_USER -p $property \\
        $PREFIX/bin/vigatra --config $ETC/vigatra.yaml doctor"
    fi
    check="Check: systemctl status $SERVICE ; curl -s http://127.0.0.1:8080/healthz
      $doctor"
    if [ "$MODE" = upgrade ]; then
        printf '\nUpgraded. %s\n' "$check"
        return 0
    fi
    cat <<EOF

Next steps
 1. TLS front: the appliance listens on 127.0.0.1:8080 only. Put nginx or Caddy in front:
      $PREFIX/share/vigatra/packaging/nginx/vigatra.conf  -> /etc/nginx/sites-available/vigatra
      $PREFIX/share/vigatra/packaging/caddy/Caddyfile     -> /etc/caddy/Caddyfile
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
 4. $check
 5. Sign in at https://<that name>/login as '$ADMIN_USERNAME' with the one-time password printed
    above; you must change it at first sign-in.
EOF
}

main() {
    parse_args "$@"
    check_environment
    check_bundle
    check_python
    if [ -f "$ETC/vigatra.yaml" ] || [ -f "$DATA/vigatra.yaml" ]; then
        MODE=upgrade
        detect_provider
    else
        MODE=install
    fi
    [ "$DRY_RUN" = 0 ] || say "dry run: printing the actions, changing nothing"
    say "Vigatra: $MODE from $BUNDLE into $PREFIX"
    if [ "$MODE" = upgrade ] && [ -n "$DB_URL$PUBLIC_URL" ]; then
        warn "--db-url and --public-url apply to a first install only; edit $ETC/vigatra.yaml instead"
    fi
    create_user
    create_directories
    stop_service
    install_program
    if [ "$MODE" = install ]; then
        create_keys
        initialise
    else
        upgrade_database
    fi
    install_unit
    enable_and_start
    next_steps
}

main "$@"
