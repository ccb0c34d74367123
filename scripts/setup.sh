#!/usr/bin/env bash
# Installs what `make demo` and `make test` need, and only what is missing, so a second run
# takes a second or two:
#   - Debian packages: libopenblas-dev (the matmul workload links it), pkg-config, gcc (tests
#     compile small C programs), chromium (the HTML report tests), libopenblas0-openmp (OpenBLAS
#     built on OpenMP, beside the pthreads build the alternatives keep as default), clang and
#     libomp-dev (LLVM OpenMP), libblis4-pthread and libblis4-openmp (BLIS; lower priority than
#     OpenBLAS as libblas.so.3, so they change no default), nodejs (and npm) for speedscope, tmux (`cpuprof top` is tested
#     in a real terminal), prometheus (scrapes `cpuprof agent` in a test; promtool checks the
#     documented rules) and golang-go (`go tool pprof` reads the pprof exports); linux-perf
#     when apt runs anyway. The prometheus package's own service is not needed: the tests start
#     their own server on a free loopback port.
#   - /dev/null a character device again if something replaced it with a regular file (tmux
#     refuses to start then; cpuprof before 0.1.0's fix did it with `-o /dev/null` as root).
#   - .node: the speedscope npm package, pinned, whose own page checks cpuprof's speedscope
#     export (tests/export.rs).
#   - .venv: a project-local virtualenv made from the real Python interpreter (not a pyenv
#     shim) with the pinned packages of scripts/requirements.txt.
# Rust (cargo) must already be installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

REQUIRED_DEBS=(libopenblas-dev pkg-config gcc chromium libopenblas0-openmp clang libomp-dev libblis4-pthread libblis4-openmp nodejs tmux prometheus golang-go)
OPTIONAL_DEBS=(linux-perf)
REQUIREMENTS=scripts/requirements.txt
VENV=.venv

say() { printf 'setup: %s\n' "$*" >&2; }

deb_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root to run: $*"
        return 1
    fi
}

repair_dev_null() {
    if [ ! -c /dev/null ]; then
        say "/dev/null is not a character device: making it one again"
        as_root rm -f /dev/null && as_root mknod -m 666 /dev/null c 1 3
    fi
}

install_debs() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        say "not a Debian/Ubuntu system: install ${REQUIRED_DEBS[*]} (OpenBLAS, pkg-config, gcc, chromium) yourself"
        return 0
    fi
    local missing=() optional=() p
    for p in "${REQUIRED_DEBS[@]}"; do
        deb_installed "$p" || missing+=("$p")
    done
    # A Python to build the venv from: python3 itself, and venv support (ensurepip).
    if ! command -v python3 >/dev/null 2>&1; then
        missing+=(python3 python3-venv)
    elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        for p in "${OPTIONAL_DEBS[@]}"; do
            deb_installed "$p" || say "optional package $p is not installed (apt-get install $p)"
        done
        return 0
    fi
    for p in "${OPTIONAL_DEBS[@]}"; do
        deb_installed "$p" || optional+=("$p")
    done
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    for p in "${optional[@]}"; do
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$p" \
            || say "optional package $p could not be installed; continuing"
    done
}

# The interpreter behind `python3`, resolving a pyenv shim (a shell script) to the real binary.
real_python() {
    python3 -c 'import sys; print(sys.executable)'
}

# True when the venv's python imports every pinned package at its pinned version.
venv_satisfied() {
    [ -x "$VENV/bin/python" ] || return 1
    "$VENV/bin/python" - "$REQUIREMENTS" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        if version(name.strip()) != want.strip():
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}

setup_venv() {
    if venv_satisfied; then
        return 0
    fi
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        local py
        py="$(real_python)"
        say "creating $VENV from $py"
        rm -rf "$VENV"
        "$py" -m venv "$VENV"
    fi
    say "installing $(grep -v '^#' "$REQUIREMENTS" | tr '\n' ' ')into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    venv_satisfied || { say "$VENV still lacks the pinned packages of $REQUIREMENTS"; return 1; }
}

check_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        say "cargo not found: install Rust (https://rustup.rs) and re-run"
        return 1
    fi
    # `make test` runs fmt and clippy too.
    local c
    for c in fmt clippy; do
        if ! cargo "$c" --version >/dev/null 2>&1; then
            if command -v rustup >/dev/null 2>&1; then
                say "adding the rustup component for cargo $c"
                rustup component add "$([ "$c" = fmt ] && echo rustfmt || echo clippy)"
            else
                say "cargo $c is missing (rustup component add $([ "$c" = fmt ] && echo rustfmt || echo clippy))"
                return 1
            fi
        fi
    done
}

# speedscope (npm), pinned, in .node/: the viewer that checks `--speedscope` output.
SPEEDSCOPE_VERSION=1.25.0
setup_node() {
    if ! command -v npm >/dev/null 2>&1; then
        # Debian's nodejs ships npm separately.
        say "installing npm"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm
    fi
    local have
    have="$(node -p "require('./.node/node_modules/speedscope/package.json').version" 2>/dev/null || true)"
    if [ "$have" = "$SPEEDSCOPE_VERSION" ]; then
        return 0
    fi
    say "installing speedscope@$SPEEDSCOPE_VERSION into .node"
    mkdir -p .node
    npm install --prefix .node --no-audit --no-fund --silent "speedscope@$SPEEDSCOPE_VERSION"
}

repair_dev_null
install_debs
setup_venv
setup_node
check_rust
say "ok"
