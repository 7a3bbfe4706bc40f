#!/usr/bin/env bash
# Install everything the test suite needs. Idempotent: each step is skipped
# when it is already done, so running it again costs about a second.
#
#   1. PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql
#      when none can be found.
#   2. An unprivileged OS user for running postgres (only when run as root,
#      since postgres refuses to run as root): $STACKWRIGHT_PG_USER or swtest.
#   3. A Python venv at .venv with the pinned harness packages
#      (tests/harness/requirements.txt + constraints.txt): moto[server],
#      alembic, psycopg2-binary, and the workflow checkers check-jsonschema and
#      zizmor (for examples/ci). Then the moto patches are self-tested.
#
# Environment: PG_BINDIR (use this postgres bin dir), STACKWRIGHT_PG_USER.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
REQUIREMENTS="tests/harness/requirements.txt"
CONSTRAINTS="tests/harness/constraints.txt"
STAMP="$VENV/.stackwright-setup-stamp"
PG_USER="${STACKWRIGHT_PG_USER:-swtest}"
MOTO_VERSION="5.2.1"

say() { printf '==> setup: %s\n' "$*"; }
die() {
    printf '\n*** setup FAILED: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        as_root apt-get update -qq >/dev/null || die "apt-get update"
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" \
        >/dev/null || die "apt-get install -y $*"
}

# Print the PostgreSQL server bin dir (the one holding initdb and pg_ctl).
# Same search order as tests/common/mod.rs.
pg_bindir() {
    local d
    if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/initdb" ]; then
        echo "$PG_BINDIR"
        return 0
    fi
    if command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    done
    if d="$(command -v initdb 2>/dev/null)"; then
        d="$(dirname "$(readlink -f "$d")")"
        if [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    fi
    return 1
}

# --- 1. PostgreSQL -----------------------------------------------------------
if ! bindir="$(pg_bindir)"; then
    apt_install postgresql
    bindir="$(pg_bindir)" || die "postgresql installed but initdb/pg_ctl not found"
fi
say "postgres: $("$bindir/initdb" --version) ($bindir)"

# --- 2. unprivileged user for postgres ----------------------------------------
if [ "$(id -u)" = 0 ]; then
    if ! id -u "$PG_USER" >/dev/null 2>&1; then
        say "creating user $PG_USER"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /bin/sh "$PG_USER" || die "useradd $PG_USER"
    fi
    command -v runuser >/dev/null 2>&1 || command -v su >/dev/null 2>&1 ||
        die "neither runuser nor su found (needed to run postgres as $PG_USER)"
fi

# --- 3. Python venv ------------------------------------------------------------
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "removing broken .venv"
    rm -rf "$VENV"
fi
if [ ! -e "$VENV" ]; then
    command -v python3 >/dev/null 2>&1 || apt_install python3
    say "python3 -m venv .venv"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV" || die "python3 -m venv .venv"
    fi
fi

want="$(cat "$REQUIREMENTS" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
    say "pip install -r $REQUIREMENTS (pinned)"
    rm -f "$STAMP"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input \
        -r "$REQUIREMENTS" -c "$CONSTRAINTS" || die "pip install"
    "$VENV/bin/python" - "$MOTO_VERSION" <<'EOF' || die "venv check"
import importlib.metadata as md, sys
import alembic, check_jsonschema, moto.server, psycopg2  # noqa: F401
got = md.version("moto")
if got != sys.argv[1]:
    sys.exit(f"moto {got} installed, {sys.argv[1]} wanted")
EOF
    "$VENV/bin/zizmor" --version >/dev/null || die "zizmor does not run"
    "$VENV/bin/python" tests/harness/moto_launcher.py --self-test 2>/dev/null ||
        die "moto patch self-test (run: .venv/bin/python tests/harness/moto_launcher.py --self-test)"
    echo "$want" >"$STAMP"
fi
say "ok (.venv: moto $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))'))"
