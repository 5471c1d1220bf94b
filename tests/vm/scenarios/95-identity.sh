#!/bin/sh
# shellcheck source=../lib.sh disable=SC2034,SC2016 # SCENARIO is read by lib.sh; job scripts are single-quoted on purpose
# identity: with --job-uid-range every job runs as a uid (and gid) of its own. Two jobs at once
# get different uids; job B cannot list, read or write job A's working directory (0700, A's
# uid); a third job while both uids are held is refused with RESOURCE_EXHAUSTED; after the end
# the uids serve new jobs again. Also /dev/stdout and /dev/stderr work for the job's uid, and
# the host's file system is read-only for jobs: a job cannot leave files in world-writable host
# places (a 1777 directory under /var/lib, /run/lock, the host's /dev/mqueue) for the next job
# that gets its uid, while its working directory, /tmp and /dev/null stay writable and kernel
# keyrings (per uid, outliving the job) are refused.
. /jw/lib.sh
SCENARIO=identity
UID0=1879048192
UID1=$((UID0 + 1))
WORK=/var/lib/jobworker/main/work

server_up --job-uid-range "$UID0-$UID1"

# first_line ID: the job's first output line, waiting up to 10 s for it.
first_line() {
    t0=$(uptime_s)
    while :; do
        l=$(output "$1" | head -n 1)
        [ -n "$l" ] && break
        is "$(since "$t0") > 10" && break
        sleep 0.1
    done
    echo "$l"
}

if ! create -- sh -c 'id -u; echo secret >secret; sleep 60' || ! wait_running "$JOB" 10; then
    fail identity.private "$ERR"
else
    A=$JOB
    ua=$(first_line "$A")
    perm=$(stat -c '%u:%g %a' "$WORK/$A" 2>&1)
    B_SCRIPT='id -u; for t in "ls ../$0" "cat ../$0/secret" "touch ../$0/x"; do echo "$t: $($t 2>&1)"; done'
    if ! create -- sh -c "$B_SCRIPT" "$A" || ! wait_final "$JOB" 20; then
        fail identity.private "$ERR"
    else
        out=$(output "$JOB")
        ub=$(echo "$out" | head -n 1)
        denied=$(echo "$out" | grep -c 'Permission denied')
        if [ "$ua" = "$ub" ] || { [ "$ua" != "$UID0" ] && [ "$ua" != "$UID1" ]; } ||
            { [ "$ub" != "$UID0" ] && [ "$ub" != "$UID1" ]; }; then
            fail identity.uids "jobs A and B ran as '$ua' and '$ub', want two different uids of $UID0-$UID1"
        else
            pass identity.uids "A as $ua, B as $ub at the same time; Job.user '$(get "$A" && jf user)'"
        fi
        if [ "$perm" != "$ua:$ua 700" ] || [ "$denied" != 3 ]; then
            fail identity.private "A's working directory is '$perm' (want $ua:$ua 700); B against it: $(echo "$out" | tail -n 3 | tr '\n' '|')"
        else
            pass identity.private "A's directory $perm; B: $(echo "$out" | tail -n 3 | tr '\n' '|')"
        fi
    fi
    # Both uids held: a third job is refused.
    if ! create -- sleep 60 || ! wait_running "$JOB" 10; then
        fail identity.exhausted "$ERR"
    else
        C=$JOB
        if create -- true; then
            fail identity.exhausted "a job started ($JOB) while both uids were held"
        else
            case "$ERR" in
            *"RESOURCE_EXHAUSTED: no free job identity"*) pass identity.exhausted "$(jc_err)" ;;
            *) fail identity.exhausted "$ERR" ;;
            esac
        fi
        stop "$C" && wait_final "$C" 20
    fi
    stop "$A" && wait_final "$A" 20
    # Released: the next two jobs run as the two uids again.
    got=
    for _ in 1 2; do
        if create -- sh -c 'id -u; sleep 60' && wait_running "$JOB" 10; then
            got="$got $(first_line "$JOB")"
            IDS="${IDS:-} $JOB"
        fi
    done
    case "$got" in
    " $UID0 $UID1" | " $UID1 $UID0") pass identity.reuse "after the end the next two jobs ran as$got" ;;
    *) fail identity.reuse "after the end the next two jobs ran as '$got', want $UID0 and $UID1" ;;
    esac
    for id in $IDS; do stop "$id" && wait_final "$id" 20; done
fi

# /dev/stdout and /dev/stderr as the job's uid. The guest's bare devtmpfs lacks the links that
# udev or systemd create on every real host; without them the shell would try to create files.
for n in 0:stdin 1:stdout 2:stderr; do
    [ -e "/dev/${n#*:}" ] || ln -s "/proc/self/fd/${n%%:*}" "/dev/${n#*:}"
done
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
if ! create -- sh -c 'echo out >/dev/stdout; echo err >/dev/stderr; echo x | tee /dev/stderr' ||
    ! wait_final "$JOB" 20; then
    fail identity.devstdout "$ERR"
else
    out=$(output "$JOB" | tr '\n' ' ')
    if [ "$(jf status)" = COMPLETED ] && [ "$out" = "out err x x " ]; then
        pass identity.devstdout "as uid $(jf user): $out"
    else
        fail identity.devstdout "ended $(jf status) with '$out', want COMPLETED with 'out err x x '"
    fi
fi
# Read-only host: world-writable host places refuse the job's files (EROFS).
WW=/var/lib/jw-vm-ww
mkdir -p "$WW" /run/lock /dev/mqueue && chmod 1777 "$WW" /run/lock
mqueue=
mount -t mqueue mqueue /dev/mqueue 2>/dev/null && mqueue=1
MARK=jw-vm-ro-$$
if ! create -- "$TESTBIN/isoprobe" write "$WW/$MARK" write /run/lock/$MARK write /dev/mqueue/$MARK \
    write ./mine write /tmp/t write /dev/null keyring || ! wait_final "$JOB" 20; then
    fail identity.readonly "$ERR"
else
    out=$(output "$JOB" | tr '\n' '|')
    want="write $WW/$MARK: EROFS|write /run/lock/$MARK: EROFS|write /dev/mqueue/$MARK: EROFS|"
    want="${want}write ./mine: ok|write /tmp/t: ok|write /dev/null: ok|keyring: EPERM|"
    left=
    for f in "$WW/$MARK" /run/lock/$MARK /dev/mqueue/$MARK; do [ -e "$f" ] && left="$left $f"; done
    if [ "$out" != "$want" ] || [ -n "$left" ]; then
        fail identity.readonly "job wrote '$out' (want '$want'); left on the host:${left:- nothing}"
    else
        pass identity.readonly "as uid $(jf user) (mqueue mounted: ${mqueue:-no}): $out"
    fi
fi
rm -f "$WW/$MARK" /run/lock/$MARK /dev/mqueue/$MARK
[ -n "$mqueue" ] && umount /dev/mqueue
rmdir "$WW"
finish
