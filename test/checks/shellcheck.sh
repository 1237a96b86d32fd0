#!/bin/bash
# Check the project's shell scripts (tests, fixtures, set-up, examples) with shellcheck.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v shellcheck >/dev/null || { echo "shellcheck.sh: shellcheck is not installed" >&2; exit 1; }
mapfile -t files < <(find test examples .ci -type f \( -name '*.sh' -o -name run \) | sort)
shellcheck -x -S warning "${files[@]}"
# bats files are bash with @test blocks; shellcheck reads them as bash.
mapfile -t suites < <(find test -name '*.bats' | sort)
if ((${#suites[@]})); then
    shellcheck -x -S warning -s bash -e SC2030,SC2031,SC2034,SC2154,SC1091,SC2317 "${suites[@]}"
fi
