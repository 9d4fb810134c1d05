#!/usr/bin/env bash
# CI for the TypeScript client, one step or all of them (`make test` runs them as
# separate stages, after its set-up has run `npm ci`):
#
#   client/ci.sh typecheck   # tsc on the sources and the tests
#   client/ci.sh generated   # the committed demo bundle and close codes are current
#   client/ci.sh unit        # build, the published entry points load as plain ESM, unit tests
#   client/ci.sh browser     # browser tests: Debian's chromium (playwright-core) against realtimed
#   client/ci.sh             # npm ci, then all of the above
#
# Needs Node 20+, Go (the browser tests build cmd/realtimed) and Debian's chromium at
# /usr/bin/chromium or $CHROMIUM (apt-get install -y chromium). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")"

step() {
  case "$1" in
  typecheck) npm run --silent typecheck ;;
  generated)
    # The demo bundle (web/demo/demo.js) and the close codes (src/codes.gen.ts).
    if ! npm run --silent check:generated >/dev/null; then
      git --no-pager diff --stat -- ../web/demo src/codes.gen.ts
      echo "web/demo or src/codes.gen.ts differs from the commit: run (cd client && npm run check:generated) and commit them" >&2
      return 1
    fi
    ;;
  unit)
    npm run --silent build
    # The published entry points load as plain ESM (import paths, no stray runtime deps).
    node --input-type=module -e 'await import("./dist/index.js"); await import("./dist/react.js");'
    npm test --silent
    ;;
  browser)
    if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
      echo "ci.sh: ${CHROMIUM:-/usr/bin/chromium} missing; install it with: apt-get install -y chromium" >&2
      return 1
    fi
    npm run --silent test:browser
    ;;
  *)
    echo "ci.sh: unknown step $1 (typecheck, generated, unit, browser)" >&2
    return 2
    ;;
  esac
}

if [ $# -eq 0 ]; then
  npm ci --no-audit --no-fund --loglevel=error
  for s in typecheck generated unit browser; do step "$s"; done
  echo "client ci: ok"
else
  for s in "$@"; do step "$s"; done
fi
