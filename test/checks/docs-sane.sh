#!/bin/bash
# docs-sane.sh: every long option in a tool's --help is in its man page's
# OPTIONS section, and every option there is in --help.
set -euo pipefail
cd "$(dirname "$0")/../.."
status=0
for bin in bin/ch-*; do
    [[ -x $bin && ! $bin =~ \.(cc|hh)$ ]] || continue
    tool=$(basename "$bin")
    man=man/$tool.1
    if [[ ! -f $man ]]; then
        echo "docs-sane: $tool has no man page ($man)" >&2
        status=1
        continue
    fi
    help=$("$bin" --help)
    # ch-image has commands, each with its own --help; the man page's
    # OPTIONS section documents them all.
    if [[ $tool == ch-image ]]; then
        for cmd in $("$bin" --help | awk '/^Commands:/{c=1; next} c && /^  [a-z]/{print $1} c && !/^  /{c=0}'); do
            help+=$'\n'$("$bin" "$cmd" --help)
        done
    fi
    help_opts=$(echo "$help" | grep -oE '(^|[ ,])--[a-z0-9][a-z0-9-]*' | sed -E 's/^[ ,]//' | sort -u)
    man_opts=$(awk '/^\.SH /{in_opts = ($2 == "OPTIONS")} in_opts' "$man" \
               | grep -oE '\\-\\-[a-z0-9]([a-z0-9]|\\-)*' | sed 's/\\-/-/g' | sort -u)
    missing_in_man=$(comm -23 <(echo "$help_opts") <(echo "$man_opts"))
    missing_in_help=$(comm -13 <(echo "$help_opts") <(echo "$man_opts"))
    if [[ -n $missing_in_man ]]; then
        echo "docs-sane: $tool --help has options missing from $man:" $missing_in_man >&2
        status=1
    fi
    if [[ -n $missing_in_help ]]; then
        echo "docs-sane: $man documents options missing from $tool --help:" $missing_in_help >&2
        status=1
    fi
    # Short options too: each "-X, --long" of --help is "\-X" in the man page.
    help_shorts=$("$bin" --help | grep -oE '^ +-[^-], --' | sed -E 's/^ +-(.), --/\1/' | sort -u)
    man_text=$(awk '/^\.SH /{in_opts = ($2 == "OPTIONS")} in_opts' "$man")
    for s in $help_shorts; do
        # "\-p" as a word: not the start of "\-path" or of "\-\-path".
        if ! grep -qE -- "\\\\-[$s]([^a-zA-Z\\\\]|\$)" <<<"$man_text"; then
            echo "docs-sane: $tool -$s is in --help but not in $man" >&2
            status=1
        fi
    done
done
exit $status
