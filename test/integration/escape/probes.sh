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
# chroot needs CAP_SYS_CHROOT; the classic escape is chroot into a subdir
# and climb out with ../.. .
probe chroot chroot / /bin/true
# Probes that need a directory make their own and remove it: /tmp here is
# the host's, shared with other users.
probe chroot-climb sh -c 'd=$(mktemp -d) || exit 1; chroot "$d" /bin/true; rc=$?; rmdir "$d"; exit $rc'
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
probe setuid-gain sh -c 'd=$(mktemp -d) || exit 1; cp /bin/busybox "$d/id" && chmod u+s "$d/id" && [ "$("$d/id" -u)" != "$(id -u)" ]; rc=$?; rm -rf "$d"; exit $rc'
# Capabilities: none in any set, whatever the uid inside.
for set in CapInh CapPrm CapEff CapBnd CapAmb; do
    probe "capability-$set" sh -c "grep '^$set:' /proc/self/status | grep -qv '0000000000000000'"
done
probe no-new-privs-off sh -c "grep -q '^NoNewPrivs:[[:space:]]*0' /proc/self/status"
exit "$escaped"
