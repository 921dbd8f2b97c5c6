# ebb — two commands do everything on a fresh Debian machine, as root:
#   make run    build, start ebbd with the embedded store, deploy examples/hello
#   make test   install test dependencies and run every test
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := $(CURDIR)/bin
RUN_DIR := $(CURDIR)/.ebb
EBB := $(BIN)/ebb
CLI_CONFIG ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/ebb/config.yaml
API_ADDR ?= 127.0.0.1:8090
HTTP_ADDR ?= :8080
TEST_TIMEOUT ?= 14m

.PHONY: all build run stop test test-short fuzz bench bench-go generate deps-run deps-test deps-bench lint clean

all: build

# apt-get only what is missing, so repeated runs are fast and offline-safe.
define apt_need
	@missing=""; for pair in $(1); do bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root to install$$missing" >&2; exit 1; fi; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps-run:
	$(call apt_need,containerd:containerd runc:runc curl:curl)

deps-test:
	$(call apt_need,containerd:containerd runc:runc redis-server:redis-server redis-sentinel:redis-sentinel wrk:wrk hey:hey curl:curl bpftool:bpftool prometheus:prometheus pebble:pebble docker-registry:docker-registry htpasswd:apache2-utils)

# What bench/harness runs: containerd and runc under ebbd, wrk and hey as
# load generators, HAProxy and nginx as the router's peers (peers.go), git
# for the commit recorded with the results.
deps-bench:
	$(call apt_need,containerd:containerd runc:runc wrk:wrk hey:hey haproxy:haproxy nginx:nginx git:git)

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ebbd ./cmd/ebbd
	$(GO) build -o $(BIN)/ebb ./cmd/ebb
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/ebb-runc ./cmd/ebb-runc
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/ebb-launch ./cmd/ebb-launch
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/hello ./examples/hello

# make run: start ebbd in the background (logs in .ebb/ebbd.log), point the
# CLI at it, package examples/hello as an OCI image, push it and deploy it.
run: deps-run build
	@scripts/run.sh "$(BIN)" "$(RUN_DIR)" "$(API_ADDR)" "$(HTTP_ADDR)" "$(CLI_CONFIG)"

stop:
	@scripts/stop.sh "$(RUN_DIR)" "$(BIN)"

# -count=1: e2e/ builds and runs ebbd itself, a dependency the Go test
# cache cannot see, so a cached pass could hide a broken binary.
# bench/ is a module of its own (so the product's go.mod carries no plotting
# libraries): ./... at the root does not reach it, so it is vetted and its
# unit tests run separately. They are pure and take seconds.
test: deps-test
	$(GO) vet ./...
	cd bench && $(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	cd bench && $(GO) test -count=1 ./...

test-short:
	$(GO) test -short ./...
	cd bench && $(GO) test -short ./...

# Each fuzz target runs for FUZZTIME (60s by default).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecodeSpec -fuzztime=$(FUZZTIME) ./api
	$(GO) test -run='^$$' -fuzz=FuzzSpool -fuzztime=$(FUZZTIME) -fuzzminimizetime=2s ./internal/ociimage

bench: deps-bench build
	cd bench && $(GO) run ./cmd/ebbbench -repo $(CURDIR) $(if $(BENCH),-only $(BENCH)) $(if $(QUICK),-quick)

bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem -count=$(or $(COUNT),6) ./... | tee bench/results/go-bench.txt

generate:
	$(GO) generate ./bpf/...

clean:
	rm -rf $(BIN)
