#!/bin/bash
# link-deps.sh: ch-run starts once per MPI rank, so it must not pay for
# libcurl or libarchive (STYLE.md: each adds milliseconds to every start),
# nor for liblzma's CPUID probe.
# ch-run is usually a static PIE (configure.ac), so look both at the shared
# libraries it needs and at the functions linked into it.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -x bin/ch-run ]] || { echo "link-deps: bin/ch-run not built" >&2; exit 1; }
status=0
for tool in bin/ch-run build-san/bin/ch-run; do
    [[ -x $tool ]] || continue
    needed=$(readelf -d "$tool" | awk '/NEEDED/ {print $NF}')
    if grep -qiE 'libcurl|libarchive' <<<"$needed"; then
        echo "link-deps: $tool links a library it must not: $(grep -iE 'libcurl|libarchive' <<<"$needed" | tr '\n' ' ')" >&2
        status=1
    fi
    linked=$(nm --defined-only --extern-only "$tool" | awk '$3 ~ /^(curl_|archive_)/ {print $3}' | head -5)
    if [[ -n $linked ]]; then
        echo "link-deps: $tool has libcurl or libarchive linked in: $(tr '\n' ' ' <<<"$linked")" >&2
        status=1
    fi
    # A static ch-run must not carry liblzma's CPU-probing constructor
    # (lib/image/xz_crc64.cc says why).
    if [[ -z $needed ]] && nm "$tool" | grep -q ' crc64_set_func$'; then
        echo "link-deps: $tool has liblzma's crc64_set_func (CPUID at every start): is xz_crc64.o linked?" >&2
        status=1
    fi
    # A static ch-run skips the standard streams' set-up (bin/no_stream_init.cc),
    # so nothing linked into it may use std::cout, std::cin, std::cerr or
    # std::clog, nor their wide twins: only ios_base::Init's own functions,
    # and sync_with_stdio, may name them.
    if [[ -z $needed ]] && nm "$tool" | grep -q ' __wrap__ZNSt8ios_base4InitC1Ev$'; then
        users=$(objdump -d --no-show-raw-insn "$tool" | awk '
            /^[0-9a-f]+ <.*>:$/ { fn = $2 }
            /<_ZSt(4cout|3cin|4cerr|4clog|5wcout|4wcin|5wcerr|5wclog)>/ { print fn }' |
            grep -vE '^<_ZNSt8ios_base(4InitC|4InitD|15sync_with_stdio)' | sort -u | head -5)
        if [[ -n $users ]]; then
            echo "link-deps: $tool uses a standard stream that it never sets up: $(tr '\n' ' ' <<<"$users")" >&2
            status=1
        fi
    fi
done
exit $status
