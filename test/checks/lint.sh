#!/bin/bash
# lint.sh [--no-tidy]: `make lint`. Formatting (clang-format, .clang-format at
# the top), static analysis (clang-tidy, .clang-tidy at the top, over the
# compile commands of a real build) and the shell scripts (shellcheck.sh).
# Prints what each found and exits non-zero if any found something.
# Not part of `make check`: clang-tidy over the whole tree takes minutes.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
tidy=yes
[[ ${1:-} == --no-tidy ]] && tidy=no
failed=()

need() { command -v "$1" >/dev/null || { echo "lint.sh: $1 is not installed (apt-get install $2)" >&2; exit 1; }; }
need clang-format clang-format
need shellcheck shellcheck

mapfile -t sources < <(git ls-files '*.cc' '*.hh' '*.c' '*.h')

echo "== clang-format"
clang-format --dry-run -Werror "${sources[@]}" || failed+=(clang-format)

if [[ $tidy == yes ]]; then
    need clang-tidy clang-tidy
    need bear bear
    echo "== clang-tidy"
    # The compile commands come from a real build of the normal flavour, so
    # clang-tidy sees the flags and config.h the compiler saw.
    db=build/compile_commands.json
    if [[ ! -s $db ]] || [[ -n $(find lib bin test -newer "$db" \( -name '*.cc' -o -name '*.hh' \) -print -quit) ]]; then
        rm -f "$db"
        make -s config.mk >/dev/null || exit 1
        bear --output "$db" -- make -B -s tools unit bench-tools >/dev/null || { echo "lint.sh: build failed" >&2; exit 1; }
    fi
    mapfile -t units < <(git ls-files 'lib/*.cc' 'bin/*.cc' 'test/*.cc')
    jobs=$(nproc 2>/dev/null || echo 2)
    printf '%s\n' "${units[@]}" |
        xargs -P "$jobs" -n 4 clang-tidy -p build --quiet 2>/dev/null || failed+=(clang-tidy)
fi

echo "== shellcheck"
bash test/checks/shellcheck.sh || failed+=(shellcheck)

if ((${#failed[@]})); then
    echo "lint: findings from ${failed[*]}"
    exit 1
fi
echo "lint: clean"
