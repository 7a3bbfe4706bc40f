#!/usr/bin/env bash
# The demo, on a fresh machine, in one command:
#   setup → build → start a local AWS endpoint (moto) and a local PostgreSQL standing in
#   for the RDS endpoint → plan → apply → plan (no changes) of stacks/webapp.toml --env dev.
# Everything it starts is stopped on exit; nothing outside .demo/ and state/ is written.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

bash scripts/setup.sh
# The dev profile shares its build with the test suite (dependencies are optimised, see Cargo.toml).
cargo build --quiet
BIN="$ROOT/target/debug/stackwright"

DEMO="$ROOT/.demo"
rm -rf "$DEMO" "state/webapp/dev.json" "state/webapp/dev.history.jsonl"
mkdir -p "$DEMO"
PIDS=()
cleanup() {
    [ -n "${PGDATA:-}" ] && [ -d "$PGDATA" ] && run_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# Local AWS endpoint: the same patched moto the tests use.
.venv/bin/python tests/harness/moto_launcher.py --port 0 --port-file "$DEMO/moto.port" >"$DEMO/moto.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$DEMO/moto.port" ] && break; sleep 0.2; done
MOTO_PORT="$(cat "$DEMO/moto.port")"

# Local PostgreSQL (moto's RDS endpoints accept no connections), as an unprivileged user.
PG_BIN="$(pg_config --bindir 2>/dev/null || true)"
[ -x "$PG_BIN/initdb" ] || PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
PG_USER="${STACKWRIGHT_PG_USER:-swtest}"
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi; }
PGDATA="$DEMO/pg"
mkdir -p "$PGDATA"
[ "$(id -u)" = 0 ] && chown -R "$PG_USER" "$DEMO"
chmod 755 "$DEMO"
PG_PASSWORD="demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
echo "$PG_PASSWORD" >"$DEMO/pwfile"
[ "$(id -u)" = 0 ] && chown "$PG_USER" "$DEMO/pwfile"
run_pg "$PG_BIN/initdb" -D "$PGDATA" -U webapp --pwfile="$DEMO/pwfile" --auth-host=scram-sha-256 --auth-local=trust >/dev/null
rm -f "$DEMO/pwfile"
PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
run_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -w -l "$DEMO/pg.log" -o "-p $PG_PORT -k $PGDATA -c listen_addresses=127.0.0.1" start >/dev/null
run_pg "$PG_BIN/createdb" -h "$PGDATA" -p "$PG_PORT" -U webapp webapp

export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1
unset AWS_PROFILE
export WEBAPP_SECRET_KEY="demo-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export WEBAPP_DB_PASSWORD="$PG_PASSWORD"
export WEBAPP_DATABASE_URL="postgres://webapp:$PG_PASSWORD@127.0.0.1:$PG_PORT/webapp"

set -x
"$BIN" validate stacks/webapp.toml --env dev
set +e
"$BIN" plan stacks/webapp.toml --env dev --detailed-exitcode
rc=$?
set -e
[ "$rc" = 2 ] || { echo "expected the first plan to exit 2 (changes), got $rc" >&2; exit 1; }
"$BIN" apply stacks/webapp.toml --env dev --auto-approve
"$BIN" plan stacks/webapp.toml --env dev --detailed-exitcode
"$BIN" migrate status stacks/webapp.toml --env dev
"$BIN" output stacks/webapp.toml --env dev
"$BIN" audit stacks/webapp.toml --env dev
set +x
echo
echo "Demo complete: state is in state/webapp/dev.json; the second plan reported no changes."
