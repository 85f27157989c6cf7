#!/bin/sh
# Build a signed offline release: one bundle per platform, each holding everything install.sh needs on
# a server without network access, with a CycloneDX SBOM of every wheel.
#
#   packaging/build-bundle.sh --sign-key FILE [--out DIR] [--python PATH] [--source DIR]
#                             [--target cp3XY-ARCH]... | [--all-targets]  [--wheels-from DIR]
#
# Targets are CPython 3.11, 3.12, 3.13 on x86_64 and aarch64 manylinux (default: this machine's
# Python and CPU). Wheels are fetched per target with pip's platform options (manylinux up to glibc
# 2.34), each checked against the hashes in offline-wheels/requirements.lock; a target for which a
# locked package has no wheel is not built, and the script names every missing wheel. --wheels-from
# takes the wheels from a directory instead of the package registry (no network). --sign-key is the
# release's Ed25519 key (packaging/release_sign.py keygen makes one; keep it offline).
#
# Prints the release directory as its last line. Layout:
#   vigatra-<version>/install.sh                          the installer (also inside each bundle)
#   vigatra-<version>/vigatra-<version>-<target>.tar.gz   one bundle per target
#   vigatra-<version>/vigatra-<version>-<target>.cdx.json its SBOM (also inside the bundle)
#   vigatra-<version>/SHA256SUMS, SHA256SUMS.minisig      every file above, signed (minisign format)
# A bundle, under vigatra-<version>-<target>/:
#   install.sh  README.md  BUNDLE-INFO  SHA256SUMS  SHA256SUMS.minisig  sbom.cdx.json
#   dist/vigatra-<version>-py3-none-any.whl, offline-wheels/*.whl + requirements.lock,
#   systemd/  packaging/nginx/  packaging/caddy/  config/vigatra.example.yaml
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/dist
SOURCE=$ROOT
PYTHON=
SIGN_KEY=
TARGETS=
WHEELS_FROM=
if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
ALL_TARGETS="cp311-x86_64 cp312-x86_64 cp313-x86_64 cp311-aarch64 cp312-aarch64 cp313-aarch64"
GLIBC_MAX=34  # manylinux_2_17 .. manylinux_2_34: RHEL 9, Ubuntu 22.04, Debian 12 and newer

die() { printf 'build-bundle.sh: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --out) [ $# -ge 2 ] || die "--out needs a value"; OUT=$2; shift 2 ;;
        --python) [ $# -ge 2 ] || die "--python needs a value"; PYTHON=$2; shift 2 ;;
        --source) [ $# -ge 2 ] || die "--source needs a value"; SOURCE=$(cd "$2" && pwd); shift 2 ;;
        --sign-key) [ $# -ge 2 ] || die "--sign-key needs a value"; SIGN_KEY=$2; shift 2 ;;
        --target) [ $# -ge 2 ] || die "--target needs a value"; TARGETS="$TARGETS $2"; shift 2 ;;
        --all-targets) TARGETS=$ALL_TARGETS; shift ;;
        --wheels-from) [ $# -ge 2 ] || die "--wheels-from needs a value"; WHEELS_FROM=$(cd "$2" && pwd); shift 2 ;;
        -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) printf 'build-bundle.sh: unknown option: %s\n' "$1" >&2; exit 2 ;;
    esac
done
[ -n "$SIGN_KEY" ] || die "--sign-key FILE is required: every release is signed (packaging/release_sign.py keygen)"
[ -f "$SIGN_KEY" ] || die "--sign-key $SIGN_KEY does not exist"
if [ -z "$TARGETS" ]; then
    TARGETS=$("$PYTHON" -c 'import platform, sys; print("cp%d%d-%s" % (*sys.version_info[:2], platform.machine()))')
fi
for target in $TARGETS; do
    case $target in
        cp31[123]-x86_64|cp31[123]-aarch64) ;;
        *) die "unknown target $target (known: $ALL_TARGETS)" ;;
    esac
done

LOCK=$SOURCE/offline-wheels/requirements.lock
for f in "$LOCK" "$SOURCE/README.md" "$SOURCE/config/vigatra.example.yaml" "$SOURCE/install.sh" \
    "$SOURCE/systemd/vigatra.service"; do
    [ -f "$f" ] || die "${f#"$SOURCE"/} is missing; the bundle ships it"
done

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
trap 'exit 130' INT TERM  # leave through the EXIT trap, which cleans up

# Build the wheel from a copy of just what goes into it: an in-tree build would leave build/
# behind and could package stale files from an earlier build.
mkdir "$STAGE/src" "$STAGE/app"
tar -C "$SOURCE" --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md appliance |
    tar -C "$STAGE/src" -xf -
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$STAGE/app" "$STAGE/src"
set -- "$STAGE"/app/vigatra-*-py3-none-any.whl
if [ $# -ne 1 ] || [ ! -f "$1" ]; then die "expected one vigatra wheel, got: $*"; fi
APP_WHEEL=$1
VERSION=$(basename "$APP_WHEEL" | cut -d- -f2)
# The schema the bundle's migrations reach, and every revision they know: install.sh refuses to
# install a bundle over a database whose revision it does not know (a newer release made it).
SCHEMA=$(cd "$STAGE/src" && "$PYTHON" -c 'from appliance.store.dump import known_revisions
from appliance.store.migrate import head_revision
print(head_revision()); print(" ".join(sorted(known_revisions())))')
SCHEMA_HEAD=$(echo "$SCHEMA" | sed -n 1p)
SCHEMA_REVISIONS=$(echo "$SCHEMA" | sed -n 2p)
COMMIT=$(git -C "$SOURCE" describe --always --dirty 2>/dev/null || echo unknown)
BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
RELEASE=$OUT/vigatra-$VERSION
rm -rf "$RELEASE"
mkdir -p "$RELEASE"
cp "$SOURCE/install.sh" "$RELEASE/install.sh"
chmod 0755 "$RELEASE/install.sh"

platforms() {  # $1 arch: pip --platform options for manylinux 2.17 .. 2.$GLIBC_MAX
    printf -- '--platform manylinux2014_%s ' "$1"
    minor=17
    while [ "$minor" -le "$GLIBC_MAX" ]; do
        printf -- '--platform manylinux_2_%s_%s ' "$minor" "$1"
        minor=$((minor + 1))
    done
}

# Every locked package that has no wheel for the target, one per line ("name==version").
missing_wheels() {  # $1 target dir, $2 pyver (3.12), $3 abi (cp312), $4 arch
    grep -E '^[A-Za-z0-9]' "$LOCK" | cut -d' ' -f1 | while IFS= read -r pin; do
        # shellcheck disable=SC2046,SC2086  # platforms() and $SOURCES are separate words on purpose
        if ! "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$2" \
            --implementation cp --abi "$3" --abi abi3 --abi none $(platforms "$4") $SOURCES \
            -d "$1/probe" "$pin" >/dev/null 2>&1; then
            echo "$pin"
        fi
    done
}

# The glibc the target's wheels need: each wheel runs from its lowest manylinux tag (manylinux2014 is
# 2.17, manylinux2010 2.12, manylinux1 2.5); the bundle needs the highest of those.
needed_glibc() {
    "$PYTHON" - "$1" <<'PY'
import pathlib, re, sys
legacy = {"manylinux1": 5, "manylinux2010": 12, "manylinux2014": 17}
needed = 17
for wheel in pathlib.Path(sys.argv[1]).glob("*.whl"):
    minors = []
    for tag in wheel.name[:-4].split("-")[-1].split("."):
        found = re.match(r"manylinux_2_(\d+)_", tag)
        minors += [int(found.group(1))] if found else [v for k, v in legacy.items() if tag.startswith(k + "_")]
    if minors:
        needed = max(needed, min(minors))
print(f"2.{needed}")
PY
}

if [ -n "$WHEELS_FROM" ]; then SOURCES="--no-index --find-links $WHEELS_FROM"; else SOURCES=; fi
BUILT_TARGETS=
FAILED=
for target in $TARGETS; do
    abi=${target%%-*}
    arch=${target#*-}
    pyver=$(echo "$abi" | sed 's/^cp3/3./')
    T=$STAGE/$target
    B=$T/bundle
    mkdir -p "$B/dist" "$B/offline-wheels"
    # Binary wheels only (a wheel built here from an sdist would not match the lock's hashes, and servers
    # have no compiler), each checked against the lock as it is downloaded.
    # shellcheck disable=SC2046,SC2086
    if ! "$PYTHON" -m pip download --quiet --only-binary=:all: --no-deps --require-hashes -r "$LOCK" \
        --python-version "$pyver" --implementation cp --abi "$abi" --abi abi3 --abi none $(platforms "$arch") \
        $SOURCES -d "$B/offline-wheels" >"$T/pip.log" 2>&1; then
        missing=$(missing_wheels "$T" "$pyver" "$abi" "$arch" | tr '\n' ' ')
        printf 'build-bundle.sh: target %s not built: no wheel for CPython %s on %s manylinux (glibc <= 2.%s) for: %s\n' \
            "$target" "$pyver" "$arch" "$GLIBC_MAX" "${missing:-(see pip: $(tail -n 1 "$T/pip.log"))}" >&2
        FAILED="$FAILED $target"
        continue
    fi
    pinned=$(grep -c '^[A-Za-z0-9]' "$LOCK")
    got=$(find "$B/offline-wheels" -name '*.whl' | wc -l)
    [ "$pinned" -eq "$got" ] || die "$target: the lock pins $pinned packages but $got wheels were downloaded"
    cp "$APP_WHEEL" "$B/dist/"
    cp "$LOCK" "$SOURCE/offline-wheels/README.md" "$B/offline-wheels/"
    cp "$SOURCE/install.sh" "$SOURCE/README.md" "$B/"
    chmod 0755 "$B/install.sh"
    mkdir -p "$B/packaging" "$B/config"
    cp -R "$SOURCE/systemd" "$B/"
    cp -R "$SOURCE/packaging/nginx" "$SOURCE/packaging/caddy" "$B/packaging/"
    cp "$SOURCE/config/vigatra.example.yaml" "$B/config/"
    glibc=$(needed_glibc "$B/offline-wheels")
    # install.sh reads python=, arch= and glibc= to refuse a server the wheels were not built for, and
    # schema_revisions= to refuse a database a newer release migrated.
    cat >"$B/BUNDLE-INFO" <<EOF
name=vigatra
version=$VERSION
target=$target
python=$pyver
arch=$arch
glibc=${glibc:-2.17}
schema_head=$SCHEMA_HEAD
schema_revisions=$SCHEMA_REVISIONS
commit=$COMMIT
built=$BUILT
EOF
    "$PYTHON" "$ROOT/packaging/sbom.py" --app-wheel "$B/dist/$(basename "$APP_WHEEL")" --wheels "$B/offline-wheels" \
        --target "$target" --out "$B/sbom.cdx.json"
    # Checked by install.sh before it changes anything; signed so that an unpacked bundle is checked too.
    (cd "$B" && find . -type f -print | sed 's#^\./##' | LC_ALL=C sort |
        while IFS= read -r f; do sha256sum "$f"; done) >"$T/SHA256SUMS"
    mv "$T/SHA256SUMS" "$B/SHA256SUMS"
    "$PYTHON" "$ROOT/packaging/release_sign.py" sign --secret-key "$SIGN_KEY" "$B/SHA256SUMS"
    NAME=vigatra-$VERSION-$target
    mv "$B" "$T/$NAME"
    tar -C "$T" --sort=name --owner=0 --group=0 --numeric-owner -czf "$RELEASE/$NAME.tar.gz" "$NAME"
    cp "$T/$NAME/sbom.cdx.json" "$RELEASE/$NAME.cdx.json"
    BUILT_TARGETS="$BUILT_TARGETS $target"
done

[ -n "$BUILT_TARGETS" ] || die "no target could be built:$FAILED"
(cd "$RELEASE" && find . -maxdepth 1 -type f ! -name 'SHA256SUMS*' -print | sed 's#^\./##' | LC_ALL=C sort |
    while IFS= read -r f; do sha256sum "$f"; done) >"$STAGE/SHA256SUMS"
mv "$STAGE/SHA256SUMS" "$RELEASE/SHA256SUMS"
"$PYTHON" "$ROOT/packaging/release_sign.py" sign --secret-key "$SIGN_KEY" "$RELEASE/SHA256SUMS"
printf 'built:%s\n' "$BUILT_TARGETS" >&2
if [ -n "$FAILED" ]; then
    printf 'not built:%s (see above for the missing wheels)\n' "$FAILED" >&2
    echo "$RELEASE"
    exit 3
fi
echo "$RELEASE"
