# The two commands a newcomer needs are `make run` (go run ./cmd/realtimed) and `make test`.
SHELL := /bin/bash
GO ?= go
export GOTOOLCHAIN := local

# .ci/stage NAME CMD...: one quiet stage, one line with its wall time (output on failure).
STAGE := .ci/stage

.PHONY: run test test-busy setup gofmt-check lint staticcheck vulncheck check-generated test-go test-client test-encore bench fuzz

run: ## start the standalone server on http://127.0.0.1:4000 (embedded NATS, data in ./.realtime)
	$(GO) run ./cmd/realtimed

# Cheap checks first; the set-up (which stops within seconds when it cannot install what
# is missing) before anything long; then the Go suite under -race, the client, the
# browser, and the Encore suite where the encore CLI is on PATH.
test: ## every test, quietly: gofmt, set-up, vet, staticcheck, govulncheck, generated code, typecheck, Go (race), client, browser, encore test
	@start=$$(date +%s); \
	$(STAGE) gofmt  $(MAKE) -s gofmt-check && \
	$(STAGE) setup  .ci/setup && \
	$(STAGE) vet    $(GO) vet ./... && \
	$(STAGE) staticcheck $(GO) tool staticcheck ./... && \
	$(STAGE) vulncheck $(MAKE) -s vulncheck && \
	$(STAGE) generated $(MAKE) -s check-generated && \
	$(STAGE) typecheck client/ci.sh typecheck && \
	$(STAGE) "go test" $(GO) test -race -count=1 -timeout 20m ./... && \
	$(STAGE) client client/ci.sh unit && \
	$(STAGE) browser client/ci.sh browser && \
	$(STAGE) encore $(MAKE) -s test-encore && \
	echo "make test: ok in $$(( $$(date +%s) - start ))s"

# The Go suite while two CPU-bound processes keep both cores busy: how to check that no
# test depends on the machine's speed. Not part of `make test`.
test-busy: ## the Go suite (race) with both cores kept busy by two spinners
	@.ci/busy $(STAGE) "go test" $(GO) test -race -count=1 -timeout 30m ./...

setup: ## install what the tests need on a fresh machine (Go modules, npm ci, chromium, postgresql)
	@.ci/setup

gofmt-check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

lint: gofmt-check
	$(GO) vet ./...

staticcheck: ## staticcheck (a go tool entry of go.mod)
	$(GO) tool staticcheck ./...

# govulncheck needs the Go vulnerability database ($(GOVULNDB), default vuln.go.dev).
# Where it cannot be reached the target says NOT RUN, loudly, and passes unless
# VULNCHECK_REQUIRED=1; GOVULNDB=file:///path points it at a local copy.
GOVULNDB ?= https://vuln.go.dev
vulncheck: ## govulncheck (a go tool entry of go.mod) against the vulnerability database
	@case "$(GOVULNDB)" in file://*) ok=1 ;; *) curl -sf --max-time 15 -o /dev/null "$(GOVULNDB)/index/db.json" && ok=1 || ok=0 ;; esac; \
	if [ "$$ok" = 1 ]; then $(GO) tool govulncheck -db "$(GOVULNDB)" ./...; \
	else echo "govulncheck NOT RUN: the vulnerability database $(GOVULNDB) is unreachable from this machine (set GOVULNDB=file:///path to a copy; VULNCHECK_REQUIRED=1 makes this an error)"; \
	[ "$${VULNCHECK_REQUIRED:-0}" != 1 ]; fi

# Every generated file: templ views, the settings files (Encore config, docs/settings.md),
# the typed channels (Go schema, TypeScript types), the close codes and the demo bundle.
check-generated: ## regenerate every generated file; fail if one differs from the commit
	@$(GO) generate ./dashboard/ ./server/ ./realtime/channels
	@if ! git diff --quiet -- dashboard/views realtime/config_gen.go realtime/defaults.cue docs/settings.md realtime/channels client/demo/channels.gen.ts; then \
		git --no-pager diff --stat -- dashboard/views realtime/config_gen.go realtime/defaults.cue docs/settings.md realtime/channels client/demo/channels.gen.ts; \
		echo "generated files differ from the commit: run go generate ./dashboard/ ./server/ ./realtime/channels and commit them" >&2; exit 1; fi
	@client/ci.sh generated

test-go:
	$(GO) test -race -count=1 -timeout 20m ./...

# The Encore suite (the service roots' tests and every package under Encore's runtime)
# needs the encore CLI, which no package registry carries (docs/encore.md); skipped
# with a note where it is missing. Offline defaults for an unlinked app. The realtime
# service declares a database: without Docker or ENCORE_SQLDB_HOST, the wrapper starts a
# Postgres and a daemon that knows it for the run, and stops both afterwards.
test-encore: ## encore test ./... where encore is on PATH
	@if command -v encore >/dev/null 2>&1; then \
		echo "encore test ./... ($$(encore version 2>/dev/null | head -1))"; \
		DISABLE_ENCORE_TELEMETRY=$${DISABLE_ENCORE_TELEMETRY:-1} \
		ENCORE_PLATFORM_API_URL=$${ENCORE_PLATFORM_API_URL:-http://127.0.0.1:9} \
		ENCORE_DEVDASH_URL=$${ENCORE_DEVDASH_URL:-http://127.0.0.1:9} \
		scripts/with-encore-postgres.sh encore test ./... < /dev/null; \
	else \
		echo "encore test skipped: no encore on PATH (docs/encore.md says how to get it)"; \
	fi

test-client:
	client/ci.sh

bench: ## the load generator suite: regenerates docs/benchmarks.md tables and docs/bench charts (~25 min)
	scripts/bench.sh

fuzz: ## run each fuzz target for a while (not part of make test)
	for f in FuzzDecodeClientFrame FuzzValidateChannel FuzzParseCursor; do \
		$(GO) test -run XXX -fuzz $$f -fuzztime 30s ./realtime/protocol || exit 1; done
	for f in FuzzVerify FuzzAllow; do $(GO) test -run XXX -fuzz $$f -fuzztime 30s ./realtime/auth || exit 1; done
	for f in FuzzDecodePublish FuzzParsePoll; do $(GO) test -run XXX -fuzz $$f -fuzztime 30s ./realtime/stream || exit 1; done
