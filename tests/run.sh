#!/usr/bin/env bash
# Runs every test Confab has: formatting and lints, unit, property, integration (the real
# binary over HTTPS and WebSocket) and end-to-end (headless Chromium and Firefox ESR). Installs what the browser
# tests need first, once: Debian's chromium, chromium-driver and firefox-esr, vpx-tools, nftables, npm (for TypeScript)
# (vpxenc, which encodes the webrtc-rs test participant's video), and geckodriver from
# crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
[ -x /usr/bin/firefox-esr ] || need_apt+=(firefox-esr)
[ -x /usr/bin/vpxenc ] || need_apt+=(vpx-tools)
[ -x /usr/sbin/nft ] || need_apt+=(nftables)
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "Installing ${need_apt[*]} for the media tests…"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The tests look for geckodriver in cargo's bin directory, where this puts it.
GECKODRIVER_VERSION=0.37.1
if ! "${CARGO_HOME:-$HOME/.cargo}/bin/geckodriver" --version 2>/dev/null | grep -q "geckodriver $GECKODRIVER_VERSION"; then
  echo "Installing geckodriver $GECKODRIVER_VERSION for the Firefox tests…"
  cargo install --quiet --locked geckodriver --version "$GECKODRIVER_VERSION"
fi

# The code's own rules first: formatted (rustfmt.toml), and clippy without a warning; the
# web client's JavaScript type-checked (JSDoc, `// @ts-check`) by TypeScript, pinned in
# typecheck/package-lock.json.
cargo fmt --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# typecheck/ also pins axe-core, which the accessibility test injects into the pages.
pinned() { node -p "require('./typecheck/package.json').devDependencies['$1']"; }
if ! typecheck/node_modules/.bin/tsc --version 2>/dev/null | grep -q "$(pinned typescript)" \
  || [ "$(node -p "require('./typecheck/node_modules/axe-core/package.json').version" 2>/dev/null)" != "$(pinned axe-core)" ]; then
  npm ci --prefix typecheck --no-audit --no-fund --loglevel=error
fi
npm run --silent --prefix typecheck check
# The web client's pure logic, with Node's own test runner (no dependency).
node --test tests/web/

# The node the integration tests start: built once, here, not by each test binary.
cargo build --locked -p confab-node --bin confab
export CONFAB_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/confab"
# Each integration test appends its time here (tests/support/timing.rs); the slowest twenty
# are printed at the end, whether the tests passed or not.
export CONFAB_TEST_TIMES="${CARGO_TARGET_DIR:-$PWD/target}/test-times.tsv"
rm -f "$CONFAB_TEST_TIMES"
status=0
cargo test --workspace --locked "$@" || status=$?
if [ -s "$CONFAB_TEST_TIMES" ]; then
  echo "The slowest twenty tests (seconds from their first node or browser lock to their end):"
  sort -rn "$CONFAB_TEST_TIMES" | head -20
fi
exit $status
