# peerd build, test and lint entry points. CI runs .ci/run, which calls
# these targets; run the same targets locally.

GO      ?= go
BIN     := bin
BENCH   ?= .
FUZZTIME ?= 60s
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)

# Where `go install` puts tools: GOBIN if set, else GOPATH/bin. Evaluated only
# by the targets that use it.
GOTOOLBIN = $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

.DEFAULT_GOAL := build
.PHONY: build test test-short demo bench generate generate-check lint cross tools clean vmtest vmtest-systemd e2e fuzz image

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/ ./cmd/peerd ./cmd/peerctl

# The container image (deploy/Dockerfile, FROM scratch): static binaries
# (CGO_ENABLED=0: no libc in the image) in bin/image/, the build context,
# then podman or docker, whichever is installed (CONTAINER_ENGINE picks one).
IMAGE ?= ghcr.io/peerd/peerd:$(VERSION)
CONTAINER_ENGINE ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)

image:
	@if [ -z "$(CONTAINER_ENGINE)" ]; then \
		echo >&2 "make image: neither podman nor docker is installed: install one (Debian: apt-get install -y podman) or name it with CONTAINER_ENGINE=/path/to/engine"; \
		exit 1; \
	fi
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN)/image/ ./cmd/peerd ./cmd/peerctl
	$(CONTAINER_ENGINE) build -f deploy/Dockerfile -t $(IMAGE) $(BIN)/image

# Privileged tests skip themselves (with the reason) when not run as root.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

test-short:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m -short ./...

# The privileged dataplane tests on every kernel of the QEMU matrix (Debian
# 6.1: clsact, 6.12: TCX), TCG only. Needs qemu-system-x86, kmod, xz-utils,
# zstd and apt's package lists; kernels are cached in .vmcache/.
# VMTEST_FLAGS: e.g. -kernels 6.1 -run TestTC -v
# Then the container test (agent/, two agents and three containers in
# their own cgroups and namespaces) on the kernels with workload
# namespaces (5.15+): the rest of agent/ needs no particular kernel.
vmtest:
	$(GO) run ./vmtests/cmd/vmmatrix $(VMTEST_FLAGS)
	$(GO) run ./vmtests/cmd/vmmatrix -kernels 6.1,6.12 -pkgs ./agent/ -run '^TestWorkloadNamespacesReachPeer$$'

# The README's systemd install, word for word, in a Debian bookworm guest
# with systemd as PID 1 under QEMU (TCG, bookworm's 6.1 kernel), then the
# running unit's checks (vmtests/cmd/vmsystemd). Root, qemu-system-x86,
# mmdebstrap and e2fsprogs; the root file system is cached in .vmcache/.
# It runs the README's build step (make build) first.
vmtest-systemd:
	$(GO) test -count=1 -v -timeout 25m -run '^TestSystemdInstall$$' ./vmtests/ -systemd

# Every fuzz target of the tree, one after another, FUZZTIME each (e.g.
# make fuzz FUZZTIME=10s). The targets are found with go test -list, so a
# new Fuzz* function is picked up without editing this file. Stops at the
# first target that fails; its crasher is then in the package's
# testdata/fuzz/<target>/.
fuzz:
	@list=$$($(GO) test -list '^Fuzz' ./...) || { echo "$$list" >&2; exit 1; }; \
	echo "$$list" | \
		awk '/^Fuzz/ { names = names " " $$1; next } /^ok/ { n = split(names, f, " "); for (i = 1; i <= n; i++) print $$2, f[i]; names = "" }' | \
		while read -r pkg target; do \
			echo "== $$target ($$pkg), $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "$$pkg" || exit 1; \
		done

# Real peerd processes, each in a network namespace of its own, on bridges
# the tests create (root). make test runs these too, with the fault suite's
# short profile; here it runs the full one (every fault, 60 s WAN windows,
# about 10 minutes) and prints its table and summary line.
e2e:
	$(GO) test -race -count=1 -v -timeout 40m ./e2e/... -e2e.profile=full

demo: build
	$(GO) build -o $(BIN)/demo-echo ./scripts/echo
	bash scripts/demo.sh

# BenchmarkCrossPeerHTTP builds its own peerd, peerctl and echo server and
# needs nginx for its baseline: run as root, it installs Debian's nginx if
# missing (without starting or enabling the system service); otherwise, or
# with PEERD_BENCH_NO_INSTALL=1, that mode is reported as skipped.
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime 1x -timeout 20m ./bench/... ./dataplane/...

# Needs protoc plus the plugins from `make tools`, and clang + llvm-strip for
# bpf2go (bpf/). Without clang the bpf2go step is skipped: the committed
# objects are used as they are.
generate:
	@if command -v clang >/dev/null && command -v llvm-strip >/dev/null; then \
		PATH="$(GOTOOLBIN):$$PATH" $(GO) generate ./...; \
	else \
		echo >&2 "note: clang/llvm-strip not found: skipping bpf2go (bpf/ keeps its committed objects)"; \
		PATH="$(GOTOOLBIN):$$PATH" $(GO) generate $$($(GO) list ./... | grep -v '/bpf$$'); \
	fi

generate-check: generate
	@if ! git diff --exit-code -- '*.pb.go'; then \
		echo >&2 "generated protobuf code is out of date: run 'make generate' and commit the result"; \
		exit 1; \
	fi
	@if command -v clang >/dev/null && command -v llvm-strip >/dev/null; then \
		if ! git diff --exit-code --stat -- 'bpf/*_bpfel.go' 'bpf/*_bpfel.o' || \
			[ -n "$$(git ls-files --others --exclude-standard -- 'bpf/*_bpfel.go' 'bpf/*_bpfel.o')" ]; then \
			echo >&2 "bpf2go output in bpf/ is out of date or not committed: run 'make generate' and commit the result"; \
			exit 1; \
		fi; \
	fi

lint:
	@unformatted=$$(gofmt -l . | grep -vE '(\.pb\.go|_bpfel\.go)$$' || true); \
	if [ -n "$$unformatted" ]; then \
		echo >&2 "these files need gofmt -w:"; \
		echo >&2 "$$unformatted"; \
		exit 1; \
	fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# The tree builds beyond Linux: operators run peerctl on macOS and Windows
# laptops. Linux-only code sits in *_linux.go beside *_other.go stubs that
# return an error matching ErrNotSupported, so all of it builds and vets on
# macOS; peerctl builds for Apple silicon and Windows too.
cross:
	GOOS=darwin $(GO) build ./...
	GOOS=darwin $(GO) vet ./...
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/peerctl
	GOOS=windows $(GO) build -o /dev/null ./cmd/peerctl

tools:
	$(GO) install $(PROTOC_GEN_GO)
	$(GO) install $(PROTOC_GEN_GO_GRPC)

clean:
	rm -rf $(BIN) .demo
