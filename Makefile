# diskd — build, test, demo. Targets that need root (test, demo) say so.
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0
# A release (a commit tagged vX.Y.Z) or a development build of the next
# release, packaging/VERSION: 0.2.0~git20261201.153012.abc1234 (see
# packaging/version.sh). Used as is for the binaries and the .deb.
VERSION     ?= $(shell packaging/version.sh)
# The build date (the commit's, for reproducible builds): man pages' .TH.
BUILD_DATE  ?= $(shell packaging/version.sh --date)
LDFLAGS     := -X main.version=$(VERSION)
BIN         := bin
# Debian packages `make demo` needs: simulated hosts (namespaces, loop
# devices with ext4, vfat and swap on them).
DEMO_PKGS   := iproute2 util-linux e2fsprogs dosfstools nftables
# Debian packages the tests need on top (.ci/run installs the same):
# socket tests: socat, tmux; D-Bus: a real dbus-daemon; notifications: dunst
# on Xvfb; e2e: nspawn; routed tests: smcroute (multicast routing) and
# nftables in router namespaces; packaging: lintian; completion: the shells.
TEST_PKGS   := $(DEMO_PKGS) fdisk socat tmux systemd \
               dbus dbus-session-bus-common dbus-x11 xvfb xauth dunst libnotify-bin \
               systemd-container debootstrap zstd smcroute \
               lintian bash-completion zsh fish man-db
DEB_PKGS    := $(TEST_PKGS)

.PHONY: all build test unit lint fuzz demo deps clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# Installs the Debian packages the tests need (DEB_PKGS), when missing.
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
	packaging/test-version.sh
	$(MAKE) fuzz
	$(MAKE) e2e

unit:
	$(GO) test -race -count=1 -short ./...

# A budget of executions, not of seconds: with a duration, Go 1.26's fuzz
# coordinator can report "context deadline exceeded" as a failure when the
# deadline passes while a starved worker is mid-call. A count has no deadline
# to race; a slow machine only takes longer (about 15 s each on 2 cores).
FUZZTIME ?= 500000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./service/wire
	$(GO) test -run '^$$' -fuzz '^FuzzParseBlkid$$' -fuzztime $(FUZZTIME) ./service/scan

# Three simulated hosts on this machine; opens the client on the first.
# DEMOFLAGS=--ipv6: the hosts share an IPv6-only link.
# DEMOFLAGS=--gossip: two subnets behind a router that drops multicast; the
# daemons find each other through the gossip mesh (--join, --no-multicast).
DEMOFLAGS   ?=
demo:
	$(MAKE) --no-print-directory deps DEB_PKGS='$(DEMO_PKGS)'
	$(MAKE) --no-print-directory build
	$(BIN)/diskd-demo --diskd $(BIN)/diskd $(DEMOFLAGS)

clean:
	rm -rf $(BIN)

# ---- Debian package and its end-to-end test (packaging/) ----
# nfpm is built once into bin/tools and reused (rebuilt only when missing).
NFPM_MOD    := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
NFPM        := $(BIN)/tools/nfpm
DEB_ARCH    ?= $(shell $(GO) env GOARCH)
DEB_VERSION := $(VERSION)
DEB_FILE    := $(BIN)/diskd_$(DEB_VERSION)_$(DEB_ARCH).deb
# Static, stripped and reproducible: no cgo, no paths of this machine, no
# symbol table or DWARF (Go's own tables keep panics' stack traces readable).
DEB_LDFLAGS := -s -w -buildid= $(LDFLAGS)

.PHONY: deb e2e lintian

$(NFPM):
	GOBIN=$(abspath $(BIN)/tools) $(GO) install $(NFPM_MOD)

# bin/diskd_VERSION_ARCH.deb: static binaries, units, D-Bus files, man
# pages, shell completion, copyright and changelog.
deb: $(NFPM)
	rm -rf $(BIN)/deb $(BIN)/diskd_*.deb
	mkdir -p $(BIN)/deb/man
	CGO_ENABLED=0 GOARCH=$(DEB_ARCH) $(GO) build -trimpath -ldflags '$(DEB_LDFLAGS)' -o $(BIN)/deb/ ./cmd/diskd ./cmd/diskctl
	for m in diskd.8 diskctl.1; do \
		sed -e 's/@DATE@/$(BUILD_DATE)/g' -e 's/@VERSION@/$(VERSION)/g' packaging/man/$$m | gzip -9n > $(BIN)/deb/man/$$m.gz || exit 1; \
	done
	packaging/deb-changelog.sh '$(VERSION)' | gzip -9n > $(BIN)/deb/changelog.gz
	SOURCE_DATE_EPOCH=$$(packaging/version.sh --epoch) DEB_VERSION='$(DEB_VERSION)' DEB_ARCH='$(DEB_ARCH)' \
		$(NFPM) package --config packaging/nfpm.yaml --packager deb --target $(DEB_FILE)

# Debian's checks of the package: no error or warning may remain (the few
# tags that every static Go binary gets are overridden, each with its
# reason, in packaging/debian/lintian-overrides).
lintian: deb
	lintian --fail-on error,warning --display-info --tag-display-limit 0 $(DEB_FILE)

# Needs root: boots two Debian 12 machines (systemd-nspawn) on a private
# bridge, installs the package in both and checks the daemon end to end.
e2e: deb
	packaging/check-units.sh
	lintian --fail-on error,warning --tag-display-limit 0 $(DEB_FILE)
	packaging/e2e/run.sh $(DEB_FILE)

# ---- Benchmark ----
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
# not an error; it fails only when it cannot measure. About 6 minutes.
bench:
	$(MAKE) --no-print-directory deps DEB_PKGS='$(BENCH_PKGS)'
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/diskd ./cmd/diskd-bench
	$(BIN)/diskd-bench --diskd $(BIN)/diskd $(BENCHFLAGS)
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 -count 1 $(GOBENCH_PKGS) | tee $(BIN)/gobench.txt
	$(BIN)/diskd-bench gobench $(BIN)/gobench.txt
