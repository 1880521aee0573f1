#!/usr/bin/env bash
# Runs schemathesis against every service of a local partnership: each service's
# /openapi.json (generated from its rule table), logged in as a demo staff member, checking
# that nothing answers 5xx and every answer is one the document declares, in its shape.
#
#   deploy/api_check.sh [EXAMPLES]     (default 25 generated requests per operation)
#
# Starts `hub up --demo` on a temporary data directory (the hub binary must be built:
# cargo build -p hub; $CARGO_TARGET_DIR is honoured), installs schemathesis from PyPI into a virtualenv under
# target/schemathesis when it is absent, and stops the partnership on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-25}"
say() { printf '[api_check] %s\n' "$*" >&2; }

venv=target/schemathesis
if [ ! -x "$venv/bin/st" ]; then
    say "installing schemathesis into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'schemathesis>=4.0,<5'
fi

data="$(mktemp -d /tmp/hub-api-check.XXXXXX)"
"${CARGO_TARGET_DIR:-target}/debug/hub" up --data "$data" --demo >"$data/up.log" 2>&1 &
hub=$!
trap 'kill "$hub" 2>/dev/null || true; wait "$hub" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 300); do
    grep -q 'the partnership is up' "$data/up.log" && break
    kill -0 "$hub" 2>/dev/null || { cat "$data/up.log" >&2; say "hub up stopped"; exit 1; }
    sleep 1
done
grep -q 'the partnership is up' "$data/up.log" || { say "the partnership did not come up"; exit 1; }

failed=0
# "  <service>  <role>  http://127.0.0.1:PORT" lines of `hub up`.
while read -r service role url; do
    # The role that may do the most at each service without being the IG office.
    staff=demo.team-manager
    [ "$service" = audit ] && staff=demo.ig-lead
    password="$(awk -v s="$service" -v id="$staff" '$1 == s && $2 == id { print $3 }' "$data/demo-staff.txt")"
    login="$(curl -s -i -X POST "$url/login" -H 'content-type: application/json' \
        -d "{\"staff_id\":\"$staff\",\"password\":\"$password\"}")"
    cookie="$(printf '%s' "$login" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(hub_session_[^=]*=[^;]*\).*/\1/p')"
    csrf="$(printf '%s' "$login" | tail -n 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["csrf_token"])')"
    # The login must work, or every request would be a (declared) 401 and prove nothing.
    whoami="$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "$url/session")"
    [ "$whoami" = 200 ] || { say "$service: logging in as $staff failed ($whoami)"; exit 1; }
    say "$service ($role) at $url as $staff"
    # The document is for logged-in staff too.
    curl -s -f -H "Cookie: $cookie" "$url/openapi.json" >"$data/openapi-$service.json"
    if ! "$venv/bin/st" run "$data/openapi-$service.json" --url "$url" \
        -H "Cookie: $cookie" -H "X-CSRF-Token: $csrf" \
        --checks not_a_server_error,status_code_conformance,response_schema_conformance \
        --exclude-operation-id 'POST /logout' \
        --generation-with-security-parameters false \
        --max-examples "$examples" --seed 7 --no-color; then
        failed=$((failed + 1))
        say "$service: schemathesis found problems (above)"
    fi
done < <(grep -E '^  [a-z-]+ +[a-z]+ +http://' "$data/up.log" | awk '{ print $1, $2, $3 }')
[ "$failed" = 0 ] || { say "$failed service(s) failed"; exit 1; }
say "every service: no 5xx, every answer as its document says"
