#!/usr/bin/env bash
# Fuzzes every place bytes or text from outside come in (the targets in fuzz/fuzz_targets),
# one target at a time, each for SECONDS (default 60), and prints per target the executions,
# executions per second, coverage (libFuzzer's cov: edges and ft: features) and crashes.
# Exits non-zero if any target crashed; the crashing input is under fuzz/artifacts/TARGET/.
#
#   deploy/fuzz.sh [SECONDS] [TARGET...]
#
# deploy/test.sh runs it briefly when HUB_FUZZ_SECONDS is set (CI); run it for hours for
# the long run. Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Environment:
#   HUB_FUZZ_RUNS=N     stop each target after N executions instead (SECONDS still bounds it)
#   HUB_FUZZ_WORK=DIR   where the corpus grows (default fuzz/target/corpus); the committed
#                       seeds in fuzz/corpus are read, never written
#   HUB_FUZZ_ARGS=...   more libFuzzer options
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

say() { printf '[fuzz.sh] %s\n' "$*" >&2; }

seconds="${1:-60}"
shift || true
# No sanitizer: the workspace forbids unsafe code, and a panic or an overflow (debug
# assertions are on) is what we look for; ASan would halve the executions per second.
flags=(-s none)
work="${HUB_FUZZ_WORK:-target/corpus}"
runs=()
[ -n "${HUB_FUZZ_RUNS:-}" ] && runs=("-runs=$HUB_FUZZ_RUNS")
read -r -a extra <<<"${HUB_FUZZ_ARGS:-}"

if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi

say "building ${#targets[@]} target(s)"
start=$(date +%s)
nice -n 10 cargo +nightly fuzz build "${flags[@]}"
say "built in $(($(date +%s) - start)) s"
bin="${CARGO_TARGET_DIR:-target}/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

logs="target/fuzz-logs"
mkdir -p "$logs"
failed=()
rows=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "artifacts/$t"
    log="$logs/$t.log"
    say "$t: ${seconds}s${HUB_FUZZ_RUNS:+, at most $HUB_FUZZ_RUNS executions}"
    status=0
    # The binary cargo fuzz built (what `cargo fuzz run` runs, without a build check per target).
    nice -n 10 "$bin/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 "${runs[@]}" "${extra[@]}" "$work/$t" "corpus/$t" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    crash=0
    if [ "$status" != 0 ]; then
        crash=1
        failed+=("$t")
        say "$t CRASHED (exit $status); the input is in fuzz/artifacts/$t/, the log in fuzz/$log:"
        grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written|deadly signal|timeout" "$log" | head -20 >&2 || true
    fi
    rows+=("$(printf '%-14s %12s %10s %7s %8s %7s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$crash")")
done

printf '\n%-14s %12s %10s %7s %8s %7s\n' target executions exec/s cov ft crashes
printf '%s\n' "${rows[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    say "crashed: ${failed[*]}"
    exit 1
fi
