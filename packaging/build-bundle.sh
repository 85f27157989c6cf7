#!/bin/sh
# Build the offline bundle: one tarball holding everything install.sh needs on a server that has
# no network access.
#
#   packaging/build-bundle.sh [--out DIR] [--python PATH]
#
# Needs the package registry (it downloads the locked wheels) and a Python of the same minor
# version as the target servers' python3: binary wheels (cryptography, psycopg, pyyaml...) are
# built per Python version, so a bundle made with 3.11 installs on Debian 12, not on Ubuntu 24.04
# (3.12). Default: the repository's .venv, else python3. install.sh refuses a mismatch.
#
# Prints the tarball's path as its last line. Layout, under vigatra-<version>/:
#   install.sh  README.md  BUNDLE-INFO  SHA256SUMS
#   dist/vigatra-<version>-py3-none-any.whl     the appliance
#   offline-wheels/*.whl  requirements.lock    every dependency, exactly as locked (with hashes)
#   systemd/  packaging/nginx/  packaging/caddy/  config/vigatra.example.yaml
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/dist
PYTHON=
if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi

die() { printf 'build-bundle.sh: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --out) [ $# -ge 2 ] || die "--out needs a value"; OUT=$2; shift 2 ;;
        --python) [ $# -ge 2 ] || die "--python needs a value"; PYTHON=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) printf 'build-bundle.sh: unknown option: %s\n' "$1" >&2; exit 2 ;;
    esac
done

LOCK=$ROOT/offline-wheels/requirements.lock
for f in "$LOCK" "$ROOT/README.md" "$ROOT/config/vigatra.example.yaml" "$ROOT/install.sh" \
    "$ROOT/systemd/vigatra.service"; do
    [ -f "$f" ] || die "${f#"$ROOT"/} is missing; the bundle ships it"
done

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
trap 'exit 130' INT TERM  # leave through the EXIT trap, which cleans up

# Build the wheel from a copy of just what goes into it: an in-tree build would leave build/
# behind and could package stale files from an earlier build.
mkdir "$STAGE/src" "$STAGE/bundle"
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md appliance |
    tar -C "$STAGE/src" -xf -
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$STAGE/bundle/dist" "$STAGE/src"
set -- "$STAGE"/bundle/dist/vigatra-*-py3-none-any.whl
if [ $# -ne 1 ] || [ ! -f "$1" ]; then die "expected one vigatra wheel, got: $*"; fi
VERSION=$(basename "$1" | cut -d- -f2)

# Dependencies: binary wheels only (a wheel built here from an sdist would not match the lock's
# hashes, and servers have no compiler), each checked against the lock as it is downloaded.
"$PYTHON" -m pip download --quiet --only-binary=:all: --no-deps --require-hashes -r "$LOCK" \
    -d "$STAGE/bundle/offline-wheels"
pinned=$(grep -c '^[A-Za-z0-9]' "$LOCK")
got=$(find "$STAGE/bundle/offline-wheels" -name '*.whl' | wc -l)
[ "$pinned" -eq "$got" ] || die "the lock pins $pinned packages but $got wheels were downloaded"

B=$STAGE/bundle
cp "$LOCK" "$ROOT/offline-wheels/README.md" "$B/offline-wheels/"
cp "$ROOT/install.sh" "$ROOT/README.md" "$B/"
chmod 0755 "$B/install.sh"
mkdir -p "$B/packaging" "$B/config"
cp -R "$ROOT/systemd" "$B/"
cp -R "$ROOT/packaging/nginx" "$ROOT/packaging/caddy" "$B/packaging/"
cp "$ROOT/config/vigatra.example.yaml" "$B/config/"

PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ARCH=$(uname -m)
COMMIT=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
# install.sh reads python= to refuse a server whose python3 the wheels were not built for.
cat >"$B/BUNDLE-INFO" <<EOF
name=vigatra
version=$VERSION
python=$PYVER
arch=$ARCH
commit=$COMMIT
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF

# Checked by install.sh before it changes anything.
(cd "$B" && find . -type f -print | sed 's#^\./##' | LC_ALL=C sort |
    while IFS= read -r f; do sha256sum "$f"; done) >"$STAGE/SHA256SUMS"
mv "$STAGE/SHA256SUMS" "$B/SHA256SUMS"

NAME=vigatra-$VERSION-py$(echo "$PYVER" | tr -d .)-$ARCH
mv "$B" "$STAGE/$NAME"
mkdir -p "$OUT"
TARBALL=$(cd "$OUT" && pwd)/$NAME.tar.gz
tar -C "$STAGE" --sort=name --owner=0 --group=0 --numeric-owner -czf "$TARBALL" "$NAME"
(cd "$OUT" && sha256sum "$NAME.tar.gz" >"$NAME.tar.gz.sha256")
echo "$TARBALL"
