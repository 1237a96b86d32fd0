#!/bin/sh
# mkimage.sh BUSYBOX DEST: build the embedded default image, a directory image
# made of a statically linked busybox and its applet links. No network, no
# root: everything here is created by the invoking user.
set -eu
busybox=$1
dest=$2
tmp="$dest.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
cd "$tmp"
mkdir -p bin sbin usr/bin usr/sbin etc dev proc sys tmp root home mnt var/tmp ch \
         mnt/0 mnt/1 mnt/2 mnt/3 mnt/4 mnt/5 mnt/6 mnt/7 mnt/8 mnt/9
chmod 1777 tmp var/tmp
cp "$busybox" bin/busybox
chmod 0755 bin/busybox
# One link per applet, where busybox itself says it belongs.
for path in $(bin/busybox --list-full); do
    [ -e "$path" ] || ln -s /bin/busybox "$path"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' > etc/group
: > etc/hosts
: > etc/resolv.conf
printf 'PATH=/bin:/sbin:/usr/bin:/usr/sbin\n' > ch/environment
cd - >/dev/null
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
