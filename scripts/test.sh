#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test (unit, integration
# with the real tools, property tests). Run scripts/setup.sh once first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast
