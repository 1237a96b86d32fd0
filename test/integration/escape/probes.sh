#!/bin/sh
# probes.sh: run INSIDE a container (busybox sh). Each probe tries to get out
# of the container or gain privilege; each must fail. Prints one line per
# probe, "blocked NAME" or "ESCAPED NAME", and exits with the number escaped.
# Argument: a host path that was not bound into the container.
host_secret=$1
escaped=0
probe() { # probe NAME COMMAND...: the command must fail
    name=$1; shift
    if "$@" >/dev/null 2>&1; then
        echo "ESCAPED $name"; escaped=$((escaped + 1))
    else
        echo "blocked $name"
    fi
}
# in_tmpdir COMMAND...: COMMAND with a new directory as its last argument,
# removed afterwards: /tmp here is the host's, shared with other users.
in_tmpdir() {
    d=$(mktemp -d) || return 1
    "$@" "$d"; rc=$?
    rm -rf "$d"
    return "$rc"
}
setuid_gain() { # setuid_gain DIR
    cp /bin/busybox "$1/id" && chmod u+s "$1/id" && [ "$("$1/id" -u)" != "$(id -u)" ]
}
# chroot needs CAP_SYS_CHROOT; the classic escape is chroot into a subdir
# and climb out with ../.. .
probe chroot chroot / /bin/true
probe chroot-climb in_tmpdir sh -c 'chroot "$0" /bin/true'
probe mknod-char mknod /tmp/probe-null c 1 3
probe mknod-block mknod /tmp/probe-sda b 8 0
probe mount-tmpfs mount -t tmpfs none /mnt
probe mount-proc mount -t proc proc /mnt
probe remount-rw mount -o remount,rw /
probe umount-dev umount -l /dev
probe write-image touch /bin/probe-file
probe write-etc sh -c 'echo x >> /etc/hostname-probe'
probe read-host-file cat "$host_secret"
probe proc-1-root ls /proc/1/root/
probe setuid-gain in_tmpdir setuid_gain
# Capabilities: none in any set, whatever the uid inside.
for set in CapInh CapPrm CapEff CapBnd CapAmb; do
    probe "capability-$set" sh -c "grep '^$set:' /proc/self/status | grep -qv '0000000000000000'"
done
probe no-new-privs-off sh -c "grep -q '^NoNewPrivs:[[:space:]]*0' /proc/self/status"
exit "$escaped"
