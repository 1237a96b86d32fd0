# ch-run.bats: ch-run with directory images, as users call it. Runs once as
# the unprivileged test user and once as root (test/check.sh).
load common

setup() {
    scratch=$BATS_TEST_TMPDIR
    chmod 0755 "$scratch"
}

# A private, writable copy of the busybox image.
writable_image() {
    cp -a "$ch_busybox" "$scratch/img"
    chmod -R u+w "$scratch/img"
}

@test 'ch-run: runs the command and returns its exit status' {
    run ch-run "$ch_busybox" -- sh -c 'echo hello; exit 7'
    assert_status 7
    assert_line_is 0 hello
}

@test 'ch-run: ch-run becomes the command (same pid, no supervisor)' {
    "$ch_bin/ch-run" "$ch_busybox" -- sh -c 'echo $$' > "$scratch/pid" &
    local pid=$!
    wait "$pid"
    [[ $(cat "$scratch/pid") == "$pid" ]]
}

@test 'ch-run: signals reach the command; killed by SIGTERM gives 143' {
    "$ch_bin/ch-run" "$ch_busybox" -- sleep 30 &
    local pid=$!
    sleep 0.5
    kill -TERM "$pid"
    local rc=0
    wait "$pid" || rc=$?
    [[ $rc -eq 143 ]]
}

@test 'ch-run: runs as the invoking user with one-line id maps' {
    run ch-run "$ch_busybox" -- sh -c 'id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map'
    assert_status 0
    assert_line_is 0 "$(id -u)"
    assert_line_is 1 "$(id -g)"
    [[ $(echo "${lines[2]}" | tr -s ' ') == " $(id -u) $(id -u) 1" ]]
    [[ $(echo "${lines[3]}" | tr -s ' ') == " $(id -g) $(id -g) 1" ]]
    [[ ${#lines[@]} -eq 4 ]]
}

@test 'ch-run: --uid and --gid change the ids inside only' {
    run ch-run --uid 0 -g 0 "$ch_busybox" -- sh -c 'id -u; id -g; cat /proc/self/uid_map'
    assert_status 0
    assert_line_is 0 0
    assert_line_is 1 0
    [[ $(echo "${lines[2]}" | tr -s ' ') == " 0 $(id -u) 1" ]]
    run ch-run --uid=1234 "$ch_busybox" -- id -u
    assert_line_is 0 1234
}

@test 'ch-run: the image is read-only by default' {
    run ch-run "$ch_busybox" -- touch /probe
    assert_status 1
    assert_output_has 'Read-only file system'
    [[ ! -e $ch_busybox/probe ]]
}

@test 'ch-run: -w writes to the image itself' {
    writable_image
    run ch-run -w "$scratch/img" -- sh -c 'echo kept > /written'
    assert_status 0
    [[ $(cat "$scratch/img/written") == kept ]]
}

@test 'ch-run: -W gives a throw-away writable layer; the image is unchanged' {
    writable_image
    run ch-run -W "$scratch/img" -- sh -c 'echo gone > /written && rm /bin/ls && cat /written'
    assert_status 0
    assert_line_is 0 gone
    [[ ! -e $scratch/img/written && -e $scratch/img/bin/ls ]]
    # The layer is a tmpfs of the given size.
    run ch-run --write-fake=1m "$scratch/img" -- sh -c 'dd if=/dev/zero of=/big bs=64k count=32 2>/dev/null; echo x > /small'
    assert_status 1
    assert_output_has 'No space left on device'
}

@test 'ch-run: default binds /dev, /proc, /sys and /etc/hosts' {
    run ch-run "$ch_busybox" -- sh -c 'echo x > /dev/null && test -e /proc/self/status && test -d /sys/kernel && cat /etc/hosts | wc -l'
    assert_status 0
    [[ ${lines[0]} -eq $(wc -l < /etc/hosts) ]]
}

@test 'ch-run: generated /etc/passwd and /etc/group name the user; --no-passwd keeps the image files' {
    run ch-run "$ch_busybox" -- sh -c 'whoami; grep -c . /etc/passwd'
    assert_status 0
    assert_line_is 0 "$(id -un)"
    run ch-run --no-passwd "$ch_busybox" -- cat /etc/passwd
    assert_status 0
    [[ $output == "$(cat "$ch_busybox/etc/passwd")" ]]
}

@test 'ch-run: /tmp is the host $TMPDIR; -t makes it private' {
    local t=$scratch/tmpdir
    mkdir -m 1777 "$t"
    echo visible > "$t/marker"
    TMPDIR=$t run ch-run "$ch_busybox" -- cat /tmp/marker
    assert_status 0
    assert_line_is 0 visible
    TMPDIR=$t run ch-run -t "$ch_busybox" -- sh -c 'ls -A /tmp; echo private > /tmp/p'
    assert_status 0
    [[ -z $output ]]
    [[ ! -e $t/p ]]
}

@test 'ch-run: TMPDIR is unset, HOME is /root, PATH gains /bin, CH_RUNNING is set' {
    PATH=/usr/local/bin:/usr/bin TMPDIR=/tmp run ch-run "$ch_busybox" -- sh -c 'echo "${TMPDIR-unset}|$HOME|$PATH|$CH_RUNNING"'
    assert_status 0
    assert_line_is 0 'unset|/root|/usr/local/bin:/usr/bin:/bin|Weird Al Yankovic'
}

@test 'ch-run: --home binds $HOME at /home/$USER' {
    local h=$scratch/home
    mkdir -p "$h"
    echo mine > "$h/file"
    writable_image
    HOME=$h run ch-run --home "$scratch/img" -- sh -c 'echo $HOME; cat /home/$USER/file'
    assert_status 0
    assert_line_is 0 "/home/$USER"
    assert_line_is 1 mine
    # A read-only image that has /home/$USER needs no -W.
    mkdir -p "$scratch/img/home/$USER"
    HOME=$h run ch-run -vv --home "$scratch/img" -- cat "/home/$USER/file"
    assert_status 0
    assert_output_has '(read-only)'
    assert_output_has mine
}

@test 'ch-run: --set-env and --unset-env, in command-line order' {
    printf 'FROMFILE=%s\n\nQUOTED='"'"'q v'"'"'\n' f1 > "$scratch/env"
    run ch-run --set-env=A=1 --set-env="$scratch/env" --unset-env=A --set-env=B='$FROMFILE:x' \
        --set-env "$ch_busybox" -- sh -c 'echo "${A-unset}|$FROMFILE|$QUOTED|$B|$PATH"'
    assert_status 0
    assert_line_is 0 'unset|f1|q v|f1:x|/bin:/sbin:/usr/bin:/usr/sbin'
    run ch-run --env-no-expand --set-env=B='$HOME' "$ch_busybox" -- sh -c 'echo "$B"'
    assert_line_is 0 '$HOME'
    printf 'Z0=a\nb\0' > "$scratch/env0"
    run ch-run --set-env0="$scratch/env0" "$ch_busybox" -- sh -c 'echo "$Z0"'
    assert_line_is 0 a
    assert_line_is 1 b
}

@test 'ch-run: --set-env errors: missing file, malformed variable' {
    run ch-run --set-env="$scratch/nope" "$ch_busybox" -- true
    assert_status 31
    assert_output_has "ch-run: --set-env: can't open $scratch/nope: No such file or directory"
    printf 'GOOD=1\nnot a variable\n' > "$scratch/bad"
    run ch-run --set-env="$scratch/bad" "$ch_busybox" -- true
    assert_status 31
    assert_output_has "can't parse $scratch/bad line 2: no '=' in not a variable"
    run ch-run --set-env='=x' "$ch_busybox" -- true
    assert_status 31
    assert_output_has 'empty name'
}

@test 'ch-run: --cd' {
    run ch-run --cd /etc "$ch_busybox" -- pwd
    assert_line_is 0 /etc
    run ch-run -c /nonexistent "$ch_busybox" -- pwd
    assert_status 31
    assert_output_has "ch-run: can't cd to /nonexistent: No such file or directory"
}

@test 'ch-run: --bind, repeated, with and without a destination' {
    mkdir -p "$scratch/a" "$scratch/b"
    echo A > "$scratch/a/f"
    echo B > "$scratch/b/f"
    run ch-run -b "$scratch/a:/mnt/0" --bind="$scratch/b:/mnt/1" "$ch_busybox" -- cat /mnt/0/f /mnt/1/f
    assert_status 0
    assert_line_is 0 A
    assert_line_is 1 B
    # Binds are read-write.
    run ch-run -b "$scratch/a:/mnt/0" "$ch_busybox" -- sh -c 'echo new > /mnt/0/g'
    assert_status 0
    [[ $(cat "$scratch/a/g") == new ]]
    # Without DST, the same path; it must exist in a read-only image (outside
    # /tmp, which is the host's)...
    local v=/var/tmp/ch-bind.$$.$RANDOM
    mkdir -p "$v"
    echo V > "$v/f"
    run ch-run -b "$v" "$ch_busybox" -- true
    local s=$status o=$output
    # ...and is created with -W (in an image the user owns).
    writable_image
    run ch-run -W -b "$v" "$scratch/img" -- cat "$v/f"
    rm -rf "$v"
    assert_status 0
    assert_line_is 0 V
    [[ $s -eq 31 ]]
    [[ $o == *"ch-run: can't bind $v to $v: destination $v not found in the image"* ]]
}

@test 'ch-run: --bind a file onto a file' {
    echo filebind > "$scratch/hostsfile"
    run ch-run -b "$scratch/hostsfile:/etc/hosts" "$ch_busybox" -- cat /etc/hosts
    assert_status 0
    assert_line_is 0 filebind
}

@test 'ch-run: --bind errors name the source, the destination and the reason' {
    run ch-run -b /nonexistent-src:/mnt/0 "$ch_busybox" -- true
    assert_status 31
    assert_output_has "ch-run: can't bind /nonexistent-src to /mnt/0: No such file or directory"
    run ch-run -b "$scratch:relative" "$ch_busybox" -- true
    assert_status 64
    assert_output_has 'destination must be an absolute path'
    run ch-run -b "$scratch:/mnt/../../etc" "$ch_busybox" -- true
    assert_status 64
    assert_output_has "ch-run: can't bind $scratch to /mnt/../../etc: destination escapes the image"
    run ch-run -b ":/mnt/0" "$ch_busybox" -- true
    assert_status 64
    assert_output_has 'no source'
    run ch-run -b "$scratch:" "$ch_busybox" -- true
    assert_status 64
    assert_output_has 'no destination'
}

@test 'ch-run: --bind of an unreadable source' {
    only_user  # root reads everything
    # Root-owned and 0700 (made by test/setup/stage.sh): the user's own
    # unreadable files would not do, since in its user namespace the user
    # holds CAP_DAC_OVERRIDE over files it owns.
    [[ -d $CH_TEST_ROOT_PRIVATE ]] || skip_env "no root-owned private directory staged"
    run ch-run -b "$CH_TEST_ROOT_PRIVATE/inner:/mnt/0" "$ch_busybox" -- true
    assert_status 31
    assert_output_has "ch-run: can't bind $CH_TEST_ROOT_PRIVATE/inner to /mnt/0: Permission denied"
}

@test 'ch-run: a symlink in the image never redirects a bind to the host' {
    writable_image
    # Outside /tmp: the container's /tmp is the host's by design.
    local sentinel=/var/tmp/ch-sentinel.$$.$RANDOM
    mkdir -p "$sentinel" "$scratch/src"
    ln -s "$sentinel" "$scratch/img/mnt/evil"          # absolute host path
    ln -s ../../../../../../.. "$scratch/img/mnt/up"   # climbs
    local status1 status2 left
    run ch-run -W -b "$scratch/src:/mnt/evil/created" "$scratch/img" -- true
    status1=$status
    run ch-run -W -b "$scratch/src:/mnt/up/tmp/../escaped" "$scratch/img" -- true
    status2=$status
    # Nothing was created on the host through the links. The sentinel goes
    # before any assertion can fail, so a failure leaves nothing behind.
    left=$(ls -A "$sentinel")
    rm -rf "$sentinel"
    [[ $status1 -eq 0 && $status2 -eq 0 ]]
    [[ -z $left ]]
    [[ ! -e /escaped ]]
    # Inside, the link resolved within the image.
    run ch-run -W -b "$scratch/src:/mnt/evil/created" "$scratch/img" -- sh -c "test -d '$sentinel/created' && echo inside"
    assert_line_is 0 inside
}

@test 'ch-run: missing image, unknown image type, image is /' {
    run ch-run /nonexistent-image -- true
    assert_status 31
    assert_output_has "ch-run: can't find image /nonexistent-image: no such file or directory"
    echo 'not an image' > "$scratch/file"
    run ch-run "$scratch/file" -- true
    assert_status 31
    assert_output_has "ch-run: can't run $scratch/file: unknown image type (not a directory or a SquashFS file)"
}

@test 'ch-run: a command that does not exist exits 49' {
    run ch-run "$ch_busybox" -- /nonexistent-command arg
    assert_status 49
    assert_output_has "ch-run: can't execve(2): /nonexistent-command: No such file or directory"
    run ch-run "$ch_busybox" -- /etc/passwd
    assert_status 49
    assert_output_has 'Permission denied'
}

@test 'ch-run: usage errors exit 64' {
    run ch-run --frobnicate "$ch_busybox" -- true
    assert_status 64
    assert_output_has "ch-run: unrecognized option '--frobnicate'"
    assert_output_has "see 'ch-run --help'"
    run ch-run "$ch_busybox"
    assert_status 64
    assert_output_has 'no COMMAND given'
    run ch-run
    assert_status 64
    assert_output_has 'no IMAGE given'
    run ch-run "" -- true
    assert_status 64
    assert_output_has 'argument 1 is empty'
    run ch-run --uid=-1 "$ch_busybox" -- true
    assert_status 64
    assert_output_has 'bad --uid: -1 (must be a non-negative integer)'
    run ch-run -u abc "$ch_busybox" -- true
    assert_status 64
    run ch-run -q -v "$ch_busybox" -- true
    assert_status 64
    run ch-run -W1G,uid=0 "$ch_busybox" -- true
    assert_status 64
    assert_output_has 'bad --write-fake size'
}

@test 'ch-run: --help, --usage and --version exit 0' {
    run ch-run --help
    assert_status 0
    assert_output_has 'Usage: ch-run [OPTION...] IMAGE -- COMMAND [ARG...]'
    assert_output_has '--write-fake'
    run ch-run --usage
    assert_status 0
    run ch-run --version
    assert_status 0
    [[ $output =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]
    # The version goes to stderr, as Charliecloud's does.
    [[ -z $(ch-run --version 2>/dev/null) ]]
}

@test 'ch-run: -q hides the command stdout; -qqq also its stderr' {
    run ch-run -q "$ch_busybox" -- sh -c 'echo out; echo err >&2'
    assert_status 0
    [[ $output == err ]]
    run ch-run -qqq "$ch_busybox" -- sh -c 'echo out; echo err >&2'
    [[ -z $output ]]
}

@test 'ch-run: -vv prints the plan' {
    run ch-run -vv -b "$scratch:/mnt/0" "$ch_busybox" -- true
    assert_status 0
    assert_output_has "uid map: $(id -u) $(id -u) 1"
    assert_output_has 'bind /dev -> /dev (required)'
    assert_output_has "bind $scratch -> /mnt/0 (required)"
    [[ $output =~ ch-run\[[0-9]+\]: ]]
    # The plan lists the steps in the order they are carried out (and -v
    # logs them as they are): generated files, the seal, then the binds.
    local plan done_
    plan=$(grep -E '^(write|seal|bind) ' <<<"$output" | cut -d' ' -f1-2 | tr '\n' ' ')
    done_=$(sed -nE 's/^ch-run\[[0-9]+\]: (write|bind) ([^ ]+).*/\1 \2/p' <<<"$output" | tr '\n' ' ')
    [[ $plan == 'write /etc/passwd write /etc/group seal scratch bind /dev '* ]]
    [[ $done_ == 'write /etc/passwd write /etc/group bind /dev bind /proc '* ]]
    [[ $done_ == *"bind /tmp bind $scratch "* ]]
}

@test 'ch-run: no descriptor leaks into the container' {
    # ls lists its own directory descriptor too; ch-run must add none.
    local inherited
    inherited=$(ls /proc/self/fd | wc -l)
    run "$ch_bin/ch-run" "$ch_busybox" -- ls /proc/self/fd
    assert_status 0
    echo "outside: $inherited, inside: ${#lines[@]}: $output"
    [[ ${#lines[@]} -eq $inherited ]]
}

@test 'ch-run: --feature' {
    run ch-run --feature=extglob
    assert_status 0
    run ch-run --feature overlayfs
    assert_status 0
    run ch-run --feature=seccomp
    assert_status 31
    run ch-run --feature=bogus
    assert_status 31
    assert_output_has 'unknown feature: bogus'
}

@test 'ch-run: images in storage run by name; -w refused; by path refused' {
    mkdir -p "$CH_IMAGE_STORAGE/img"
    cp -a "$ch_busybox" "$CH_IMAGE_STORAGE/img/local%bb+1.0"
    run ch-run local/bb:1.0 -- echo by-name
    assert_status 0
    assert_line_is 0 by-name
    run ch-run -w local/bb:1.0 -- true
    assert_status 31
    assert_output_has "can't run local/bb:1.0 with --write"
    run ch-run "$CH_IMAGE_STORAGE/img/local%bb+1.0" -- true
    assert_status 31
    assert_output_has 'run it by name instead'
    run ch-run -s "$scratch/other" "$ch_busybox" -- true
    assert_status 0
    assert_output_has 'warning: storage directory not found'
}

@test 'ch-run: escape probes all fail inside the container' {
    local secret=/var/tmp/ch-secret.$$.$RANDOM
    echo secret > "$secret"
    chmod 644 "$secret"
    run ch-run -b "$BATS_TEST_DIRNAME/escape:/mnt/0" "$ch_busybox" -- /mnt/0/probes.sh "$secret"
    local s1=$status o1=$output
    run ch-run --uid 0 --gid 0 -b "$BATS_TEST_DIRNAME/escape:/mnt/0" "$ch_busybox" -- /mnt/0/probes.sh "$secret"
    rm -f "$secret"
    echo "$o1"
    echo "as uid 0 inside:"
    echo "$output"
    [[ $s1 -eq 0 && $status -eq 0 ]]
    [[ $o1 != *ESCAPED* && $output != *ESCAPED* ]]
    [[ $(grep -c '^blocked' <<<"$o1") -ge 18 ]]
}

@test 'ch-run: refuses to run setuid or with file capabilities' {
    only_root
    local d=/var/tmp/ch-setuid.$$
    mkdir -m 755 "$d"
    cp "$ch_bin/ch-run" "$d/ch-run-suid"
    chmod 4755 "$d/ch-run-suid"
    run runuser -u "${CH_TEST_USER:-chtest}" -- "$d/ch-run-suid" "$ch_busybox" -- true
    local s=$status o=$output
    cp "$ch_bin/ch-run" "$d/ch-run-cap"
    setcap cap_net_raw+ep "$d/ch-run-cap"
    run runuser -u "${CH_TEST_USER:-chtest}" -- "$d/ch-run-cap" "$ch_busybox" -- true
    rm -rf "$d"
    [[ $s -eq 31 && $o == *'refusing to run setuid, setgid or with file capabilities'* ]]
    assert_status 31
    assert_output_has 'refusing to run setuid, setgid or with file capabilities'
}
