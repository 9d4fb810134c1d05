# The two commands a newcomer needs are `make run` (go run ./cmd/realtimed) and `make test`.
SHELL := /bin/bash
GO ?= go
export GOTOOLCHAIN := local

# .ci/stage NAME CMD...: one quiet stage, one line with its wall time (output on failure).
STAGE := .ci/stage

.PHONY: run test test-busy setup gofmt-check lint check-generated test-go test-client bench fuzz

run: ## start the standalone server on http://127.0.0.1:4000 (embedded NATS, data in ./data)
	$(GO) run ./cmd/realtimed

# Cheap checks first; the set-up (which stops within seconds when it cannot install what
# is missing) before anything long; then the Go suite under -race, the client, the browser.
test: ## every test, quietly: gofmt, set-up, vet, generated code, typecheck, Go (race), client, browser
	@start=$$(date +%s); \
	$(STAGE) gofmt  $(MAKE) -s gofmt-check && \
	$(STAGE) setup  .ci/setup && \
	$(STAGE) vet    $(GO) vet ./... && \
	$(STAGE) generated $(MAKE) -s check-generated && \
	$(STAGE) typecheck client/ci.sh typecheck && \
	$(STAGE) "go test" $(GO) test -race -count=1 -timeout 20m ./... && \
	$(STAGE) client client/ci.sh unit && \
	$(STAGE) browser client/ci.sh browser && \
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

check-generated: ## regenerate templ views and the demo bundle and fail if they differ from the commit
	@$(GO) generate ./dashboard/
	@if [ -n "$$(git status --porcelain -- dashboard/views)" ]; then \
		git --no-pager diff --stat -- dashboard/views; \
		echo "dashboard/views differs from the commit: run go generate ./dashboard/ and commit it" >&2; exit 1; fi
	@client/ci.sh generated

test-go:
	$(GO) test -race -count=1 -timeout 20m ./...

test-client:
	client/ci.sh

bench: ## the load generator suite: regenerates docs/benchmarks.md tables and docs/bench charts (~25 min)
	scripts/bench.sh

fuzz: ## run each fuzz target for a while (not part of make test)
	for f in FuzzDecodeClientFrame FuzzValidateChannel FuzzParseCursor; do \
		$(GO) test -run XXX -fuzz $$f -fuzztime 30s ./realtime/protocol || exit 1; done
	for f in FuzzVerify FuzzAllow; do $(GO) test -run XXX -fuzz $$f -fuzztime 30s ./realtime/auth || exit 1; done
	for f in FuzzDecodePublish FuzzParsePoll; do $(GO) test -run XXX -fuzz $$f -fuzztime 30s ./realtime/stream || exit 1; done
