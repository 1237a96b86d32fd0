#!/bin/bash
# check.sh [quick|standard|full]: every test, ending with one line
# "N passed, N failed" totalled over static checks, unit tests (normal and
# sanitizer builds) and bats suites (as root and as an unprivileged user).
# Exits non-zero if anything failed.
set -uo pipefail
scope=${1:-standard}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
passed=0
failed=0
failures=()

count() { # count NAME PASSED FAILED
    passed=$((passed + $2))
    failed=$((failed + $3))
    ((${3} > 0)) && failures+=("$1: $3 failed")
    return 0
}

section() { printf '\n==== %s ====\n' "$*"; }

# ---- set-up: test dependencies, the test user, the staging area --------------
section "set-up"
CH_INSTALL_DEPS=${CH_INSTALL_DEPS:-yes} test/setup/install-deps.sh build test || exit 1
# shellcheck source=test/setup/stage.sh
source test/setup/stage.sh   # sets CH_TEST_ROOT, ch_test_user; restores /dev/fuse at exit
stage_all "$scope" || { echo "set-up failed" >&2; echo "0 passed, 1 failed"; exit 1; }

# ---- static checks -----------------------------------------------------------
section "static checks"
for c in test/checks/*.sh; do
    [[ -e $c ]] || continue   # no checks yet: the glob stays unexpanded
    [[ $c == */lint.sh ]] && continue
    if bash "$c"; then
        echo "ok   $c"; count "$c" 1 0
    else
        echo "FAIL $c"; count "$c" 0 1
    fi
done

# ---- fuzzing: a brief run of test/fuzz/ (make fuzz runs it longer) ----------
# Seeded with the hostile SquashFS corpus; one pass or one failure, like a
# static check. CH_FUZZ_SECONDS=0 leaves it out.
fuzz_s=${CH_FUZZ_SECONDS:-45}
if ((fuzz_s > 0)); then
    section "fuzzing (${fuzz_s}s)"
    if ! make --no-print-directory fuzz-tools > "$CH_TEST_ROOT/fuzz-build.log" 2>&1; then
        tail -n 20 "$CH_TEST_ROOT/fuzz-build.log"
        echo "FAIL fuzz (build)"; count fuzz 0 1
    elif test/fuzz/run.sh build-fuzz/test/fuzz/squash_fuzz "$fuzz_s" "$CH_TEST_ROOT/fuzz"; then
        echo "ok   fuzz"; count fuzz 1 0
    else
        echo "FAIL fuzz"; count fuzz 0 1
    fi
fi

# ---- unit tests --------------------------------------------------------------
run_unit() { # run_unit LABEL BINARY
    local out rc line p f
    out=$("$2" --no-intro 2>&1); rc=$?
    echo "$out" | tail -n 40
    line=$(grep -E '^\[doctest\] test cases:' <<<"$out" | tail -1)
    p=$(sed -E 's/.*\| *([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/.*\| *([0-9]+) failed.*/\1/' <<<"$line")
    [[ $p =~ ^[0-9]+$ ]] || p=0
    [[ $f =~ ^[0-9]+$ ]] || f=0
    ((rc != 0 && f == 0)) && f=1   # crashed, or a sanitizer report
    count "$1" "$p" "$f"
}
section "unit tests"
run_unit "unit" build/test/unit/unit-tests
if [[ -x build-san/test/unit/unit-tests ]]; then
    section "unit tests (ASan+UBSan)"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_unit "unit (sanitizers)" build-san/test/unit/unit-tests
fi

# ---- integration tests ---------------------------------------------------------
run_bats() { # run_bats LABEL AS(root|user) BINDIR SUITE...
    local label=$1 as=$2 bindir=$3; shift 3
    local out rc p f envs
    envs=(CH_TEST_BIN="$bindir" CH_TEST_IMG="$CH_TEST_ROOT/img" CH_TEST_AS="$as"
          CH_TEST_SCOPE="$scope" CH_TEST_ROOT_PRIVATE="$CH_TEST_ROOT/private" CH_TEST_MUST_WORK="${CH_TEST_MUST_WORK:-0}"
          ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
          PATH="$PATH" TMPDIR=/tmp)
    if [[ $as == user && $(id -u) -eq 0 ]]; then
        out=$(cd /tmp && runuser -u "$ch_test_user" -- env -i HOME="/home/$ch_test_user" \
              USER="$ch_test_user" "${envs[@]}" bats --tap "$@" 2>&1); rc=$?
    else
        out=$(env "${envs[@]}" USER="$(id -un)" bats --tap "$@" 2>&1); rc=$?
    fi
    echo "$out"
    p=$(grep -cE '^ok ' <<<"$out")
    f=$(grep -cE '^not ok ' <<<"$out")
    ((rc != 0 && f == 0)) && f=1
    count "$label" "$p" "$f"
}
suites=("$CH_TEST_ROOT"/suites/*.bats)
if [[ $(id -u) -eq 0 ]]; then
    section "integration tests as $ch_test_user"
    run_bats "bats (user)" user "$CH_TEST_ROOT/bin" "${suites[@]}"
    section "integration tests as root"
    run_bats "bats (root)" root "$CH_TEST_ROOT/bin" "${suites[@]}"
    # ch-run's suites (the SquashFS one runs the FUSE server sanitized too).
    san_suites=()
    for s in "$CH_TEST_ROOT"/suites/ch-run.bats "$CH_TEST_ROOT"/suites/ch-run-*.bats; do
        [[ -e $s ]] && san_suites+=("$s")
    done
    if [[ -d $CH_TEST_ROOT/bin-san && ${#san_suites[@]} -gt 0 ]]; then
        section "ch-run integration tests with ASan+UBSan, as $ch_test_user"
        run_bats "bats (user, sanitizers)" user "$CH_TEST_ROOT/bin-san" "${san_suites[@]}"
    fi
else
    section "integration tests as $(id -un)"
    run_bats "bats" user "$CH_TEST_ROOT/bin" "${suites[@]}"
fi

# ---- summary -----------------------------------------------------------------
section "summary"
for f in "${failures[@]}"; do echo "  $f"; done
echo "$passed passed, $failed failed"
((failed == 0))
