#!/usr/bin/env bash
# The project's test command: setup (skipped when done), then
#   cargo fmt --check
#   cargo clippy --all-targets -- -D warnings
#   cargo test --all-targets [ARGS...]
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh harness_smoke`.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

step() {
    local name="$1"
    shift
    local start=$SECONDS
    printf '\n==> %s\n' "$name"
    if ! "$@"; then
        printf '\n*** FAILED step: %s\n*** command: %s\n' "$name" "$*" >&2
        exit 1
    fi
    printf '==> %s: ok (%ss)\n' "$name" "$((SECONDS - start))"
}

step "setup" bash scripts/setup.sh
step "cargo fmt --check" cargo fmt --check
step "cargo clippy" cargo clippy --all-targets -- -D warnings
step "cargo test" cargo test --all-targets "$@"
printf '\n==> all steps passed\n'
