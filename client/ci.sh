#!/usr/bin/env bash
# CI for the TypeScript client: install, type-check, build, unit tests, browser tests,
# and a check that the committed demo bundle (web/demo/demo.js) is current.
# Needs Node 20+, Go (to build cmd/realtimed) and Debian's chromium at /usr/bin/chromium
# (apt-get install -y chromium). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "ci.sh: ${CHROMIUM:-/usr/bin/chromium} missing; install it with: apt-get install -y chromium" >&2
  exit 1
fi

npm ci --no-audit --no-fund
npm run typecheck
npm run build
# The published entry points load as plain ESM (import paths, no stray runtime deps).
node --input-type=module -e 'await import("./dist/index.js"); await import("./dist/react.js");'
npm test
npm run test:browser
npm run check:generated
echo "client ci: ok"
