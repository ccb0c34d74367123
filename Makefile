# cpuprof — entry points. `make demo` on a fresh machine: install, build, profile, report.
#
#   make setup   install what is missing (Debian packages, .venv with NumPy + threadpoolctl)
#   make build   cargo build --release --workspace
#   make test    setup + build + all tests (one at a time: they measure CPU) + fmt + clippy
#   make demo    profile the oversubscribed matmul workload and show the summary and report
#   make bench   the recorder's own cost (bench/run.sh; by hand, not part of `make test`)
#   make wheel   the `pip install cpuprof` wheel (maturin, manylinux via zig) in target/wheels
#
# Honours CARGO_TARGET_DIR; binaries are taken from $(TARGET_DIR)/release.

SHELL := /bin/bash
CARGO ?= cargo
TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)
export CPUPROF_BIN_DIR := $(abspath $(TARGET_DIR))/release

.PHONY: setup build test demo bench fmt clippy wheel

setup:
	scripts/setup.sh

build:
	$(CARGO) build --release --workspace

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

test: setup build
	$(CARGO) test --release --workspace --no-fail-fast -- --test-threads=1
	$(MAKE) --no-print-directory fmt
	$(MAKE) --no-print-directory clippy

demo: setup build
	scripts/demo.sh

bench: setup build
	bench/run.sh

# The wheel's build has a target directory of its own (zig links against an old glibc, so its
# artifacts differ from `make build`'s).
wheel: setup
	PATH="$(CURDIR)/.venv/bin:$$PATH" .venv/bin/maturin build --release --zig \
		--compatibility manylinux2014 -o $(TARGET_DIR)/wheels --target-dir $(TARGET_DIR)/wheel
