# The two commands a newcomer needs are `make run` (go run ./cmd/realtimed) and `make test`.
SHELL := /bin/bash
GO ?= go
export GOTOOLCHAIN := local

.PHONY: run test test-go test-client test-encore check-generated lint staticcheck vulncheck fuzz bench

run: ## start the standalone server on http://127.0.0.1:4000 (embedded NATS, data in ./.realtime)
	$(GO) run ./cmd/realtimed

test: lint check-generated staticcheck vulncheck test-go test-client ## every test: vet, staticcheck, govulncheck, generated code, Go (race), client and browser

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
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

check-generated: ## regenerate templ views and the settings files (Encore config, docs/settings.md); fail if they differ from the commit
	$(GO) generate ./dashboard/ ./server/
	git diff --exit-code -- dashboard/views realtime/config_gen.go realtime/defaults.cue docs/settings.md
	$(GO) generate ./realtime/channels && git diff --exit-code -- realtime/channels client/demo/channels.gen.ts

test-go:
	$(GO) test -race -count=1 -timeout 15m ./...

# The Encore suite (the service roots' tests and every package under Encore's runtime)
# needs the encore CLI, which no package registry carries (docs/encore.md); skipped
# with a note where it is missing. Offline defaults for an unlinked app.
test-encore: ## encore test ./... where encore is on PATH
	@if command -v encore >/dev/null 2>&1; then \
		echo "encore test ./... ($$(encore version 2>/dev/null | head -1))"; \
		DISABLE_ENCORE_TELEMETRY=$${DISABLE_ENCORE_TELEMETRY:-1} \
		ENCORE_PLATFORM_API_URL=$${ENCORE_PLATFORM_API_URL:-http://127.0.0.1:9} \
		ENCORE_DEVDASH_URL=$${ENCORE_DEVDASH_URL:-http://127.0.0.1:9} \
		encore test ./... < /dev/null; \
	else \
		echo "encore test skipped: no encore on PATH (docs/encore.md says how to get it)"; \
	fi

test-client:
	@if [ -x client/ci.sh ]; then client/ci.sh; else echo "client/ci.sh not present: no client tests"; fi

bench: ## the load generator suite: regenerates docs/benchmarks.md tables and docs/bench charts (~25 min)
	scripts/bench.sh

fuzz: ## run each fuzz target for a while (not part of make test)
	for f in FuzzDecodeClientFrame FuzzValidateChannel FuzzParseCursor; do \
		$(GO) test -run XXX -fuzz $$f -fuzztime 30s ./realtime/protocol || exit 1; done
	for f in FuzzVerify FuzzAllow; do $(GO) test -run XXX -fuzz $$f -fuzztime 30s ./realtime/auth || exit 1; done
	for f in FuzzDecodePublish FuzzParsePoll; do $(GO) test -run XXX -fuzz $$f -fuzztime 30s ./realtime/stream || exit 1; done
