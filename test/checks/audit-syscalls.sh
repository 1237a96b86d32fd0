#!/bin/bash
# audit-syscalls.sh: namespace, mount and id-map code stays in the few files a
# reviewer audits (STYLE.md §6). Anything else calling these fails the check.
set -euo pipefail
cd "$(dirname "$0")/../.."
allowed='^lib/run/apply\.cc$|^lib/run/probe\.cc$|^lib/image/squash_serve\.cc$'
pattern='(^|[^A-Za-z0-9_])(unshare|setns|mount|umount|umount2|pivot_root|fsmount|move_mount|open_tree)[[:space:]]*\(|SYS_pivot_root|uid_map|gid_map|PR_CAPBSET_DROP|SYS_capset'
status=0
while IFS= read -r file; do
    [[ $file =~ $allowed ]] && continue
    # Ignore comment lines; what remains is code.
    hits=$(grep -nE "$pattern" "$file" | grep -vE '^[0-9]+:[[:space:]]*//' || true)
    if [[ -n $hits ]]; then
        echo "audit-syscalls: $file does privileged-looking work outside the audited files:" >&2
        echo "$hits" >&2
        status=1
    fi
done < <(find lib bin -name '*.cc' -o -name '*.hh' | sort)
exit $status
