#!/bin/bash
# The C and C++ sources follow .clang-format (clang-format 14): `clang-format -i
# FILE` fixes a finding. The rest of `make lint` (clang-tidy) is slower and is
# not part of `make check`.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v clang-format >/dev/null || { echo "format.sh: clang-format is not installed" >&2; exit 1; }
mapfile -t sources < <(git ls-files '*.cc' '*.hh' '*.c' '*.h' 2>/dev/null || find bin lib test -name '*.cc' -o -name '*.hh' -o -name '*.c')
clang-format --dry-run -Werror "${sources[@]}"
