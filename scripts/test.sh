#!/usr/bin/env bash
# Palisade's whole test suite, runnable on a fresh Debian 12 machine with Rust (rustup).
#
# It installs what the tests need (Debian packages, Rust components), then runs
# `cargo fmt --check`, `cargo clippy -D warnings`, `cargo doc` and every test of the workspace.
# Test data is read from ../shared (see README); tests that need it say so loudly when
# it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the test suite uses: a C toolchain; DPDK 22.11 with its tools (dpdk-dev
# has dpdk-testpmd and dpdk-test-acl) and libclang for bindgen; iproute2 for veth and
# namespace tests; openssl (s_client) as an outside TLS client of the manager; nc and ping
# for the namespace scenarios' real traffic (hil-tests), ethtool for their DPDK variant;
# net-snmp's clients and snmptrapd against our SNMP agents; ClickHouse (the flow store's
# server; the tests start their own) and nfdump / softflowd (IPFIX peers); protoc and the
# well-known types (protobuf-compiler, libprotobuf-dev) for etcd-client's build script: the
# fanout bench's etcd peer is a dev-dependency, so a fresh machine cannot build the tests
# without them (our own API crate carries a vendored protoc).
packages=(build-essential pkg-config libdpdk-dev dpdk dpdk-dev libclang-dev iproute2
    openssl netcat-openbsd iputils-ping ethtool snmp snmptrapd clickhouse-server nfdump
    softflowd protobuf-compiler libprotobuf-dev)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "==> installing Debian packages: ${missing[*]}"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "==> Rust components"
rustup component add rustfmt clippy >/dev/null

if [[ ! -d ../shared/data ]]; then
    echo "!!! ../shared/data is missing: corpus and ClassBench tests will SKIP (they say so below)" >&2
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

echo "==> cargo doc (broken links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked --quiet

echo "==> cargo test"
cargo test --workspace --all-features --locked --no-fail-fast

echo "==> all tests passed"
