# diskd — build, test, demo. Targets that need root (test, demo) say so.
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0
# The release tag (git describe, without a leading v), else packaging/VERSION.
VERSION     ?= $(shell v=$$(git describe --tags --dirty 2>/dev/null) && echo "$$v" | sed 's/^v//' || cat packaging/VERSION)
LDFLAGS     := -X main.version=$(VERSION)
BIN         := bin
# Debian packages the tests and the demo use (see .ci/run).
# D-Bus tests: a real dbus-daemon; notifications: dunst on Xvfb; e2e: nspawn;
# routed tests: smcroute (multicast routing) and nftables in router namespaces.
DEB_PKGS    := iproute2 util-linux e2fsprogs dosfstools fdisk socat tmux systemd \
               dbus dbus-session-bus-common dbus-x11 xvfb xauth dunst libnotify-bin \
               systemd-container debootstrap zstd smcroute nftables

.PHONY: all build test unit lint fuzz demo deps clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# Installs the Debian packages the tests and the demo need, when missing.
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: the files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# The whole suite (as root): lint, every test with the race detector, short
# fuzz runs, and the end-to-end test of the .deb in real systemd machines.
test: deps lint
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz
	$(MAKE) e2e

unit:
	$(GO) test -race -count=1 -short ./...

FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./service/wire
	$(GO) test -run '^$$' -fuzz '^FuzzParseBlkid$$' -fuzztime $(FUZZTIME) ./service/scan

# Three simulated hosts on this machine; opens the client on the first.
# DEMOFLAGS=--ipv6: the hosts share an IPv6-only link.
DEMOFLAGS   ?=
demo: deps build
	$(BIN)/diskd-demo --diskd $(BIN)/diskd $(DEMOFLAGS)

clean:
	rm -rf $(BIN)

# ---- Debian package and its end-to-end test (packaging/) ----
NFPM        := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DEB_ARCH    ?= $(shell $(GO) env GOARCH)
# Debian-safe: 1.2.0-3-gabc1234-dirty (git describe) becomes 1.2.0+3+gabc1234+dirty.
DEB_VERSION := $(subst -,+,$(VERSION))
DEB_FILE    := $(BIN)/diskd_$(DEB_VERSION)_$(DEB_ARCH).deb

.PHONY: deb e2e

# bin/diskd_VERSION_ARCH.deb: static binaries, units, D-Bus files, man pages.
deb:
	rm -rf $(BIN)/deb $(BIN)/diskd_*.deb
	mkdir -p $(BIN)/deb/man
	CGO_ENABLED=0 GOARCH=$(DEB_ARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/deb/ ./cmd/diskd ./cmd/diskctl
	gzip -9n < packaging/man/diskd.8 > $(BIN)/deb/man/diskd.8.gz
	gzip -9n < packaging/man/diskctl.1 > $(BIN)/deb/man/diskctl.1.gz
	DEB_VERSION='$(DEB_VERSION)' DEB_ARCH='$(DEB_ARCH)' $(GO) run $(NFPM) package \
		--config packaging/nfpm.yaml --packager deb --target $(DEB_FILE)

# Needs root: boots two Debian 12 machines (systemd-nspawn) on a private
# bridge, installs the package in both and checks the daemon end to end.
e2e: deb
	packaging/check-units.sh
	packaging/e2e/run.sh $(DEB_FILE)

# ---- Benchmark (issue 7) ----
.PHONY: bench

# Debian packages the benchmark needs (installed with deps when missing).
BENCH_PKGS  := iproute2 util-linux e2fsprogs dbus
# Packages with Go benchmarks; run on one core (-cpu 1), with allocations.
GOBENCH_PKGS := ./service/wire ./service/peer ./service/control ./dbusapi
# BENCHFLAGS=--quick: a smoke run of about a minute (not comparable).
BENCHFLAGS  ?=

# As root: builds diskd and diskd-bench, measures diskd on simulated hosts
# (latency side by side with --no-uevents, scale, idle) and prints a table,
# then runs the Go benchmarks and prints theirs. A missed target is shown,
# not an error; it fails only when it cannot measure. About 4 minutes.
bench:
	$(MAKE) --no-print-directory deps DEB_PKGS='$(BENCH_PKGS)'
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/diskd ./cmd/diskd-bench
	$(BIN)/diskd-bench --diskd $(BIN)/diskd $(BENCHFLAGS)
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 -count 1 $(GOBENCH_PKGS) | tee $(BIN)/gobench.txt
	$(BIN)/diskd-bench gobench $(BIN)/gobench.txt
