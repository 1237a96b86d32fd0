# ch-checkns.bats: the kernel check, as users call it.
load common

@test 'ch-checkns: everything ch-run needs is here, exit 0' {
    run ch-checkns
    echo "$output"
    assert_status 0
    assert_output_has 'ok      user and mount namespaces, bind mounts, pivot_root (ch-run)'
    assert_output_has 'ok      overlayfs'
    assert_output_has 'ok      FUSE in a user namespace (SquashFS images)'
    assert_output_has 'ok: ch-run has everything it needs'
}

@test 'ch-checkns: names /dev/fuse as the problem when this user cannot use it' {
    only_root
    # A private mount namespace where /dev/fuse is a root-only 0600 node, as on
    # machines without Debian's udev rules; the check runs as the test user.
    run unshare -m sh -c '
        mount -t tmpfs none /mnt && mknod -m 0600 /mnt/fuse c 10 229 &&
        mount --bind /mnt/fuse /dev/fuse &&
        runuser -u "${CH_TEST_USER:-chtest}" -- "$0"' "$ch_bin/ch-checkns"
    assert_status 1
    assert_output_has 'missing FUSE in a user namespace (SquashFS images): /dev/fuse is mode 0600 owned by uid 0'
    assert_output_has 'chmod 0666 /dev/fuse'
}

@test 'ch-checkns: usage' {
    run ch-checkns --help
    assert_status 0
    assert_output_has 'Usage: ch-checkns'
    run ch-checkns extra
    assert_status 64
    run ch-checkns --bogus
    assert_status 64
}

@test 'ch-checkns: names user.max_user_namespaces = 0' {
    # The limit is per user namespace: set it to 0 in a throw-away one and
    # run the check inside, leaving the host's setting alone.
    run unshare -Ur sh -c 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0"' "$ch_bin/ch-checkns"
    assert_status 1
    assert_output_has 'missing user and mount namespaces, bind mounts, pivot_root (ch-run): user namespaces are disabled (sysctl user.max_user_namespaces = 0'
    assert_output_has 'missing overlayfs (ch-run -W, --home): needs user namespaces'
}
