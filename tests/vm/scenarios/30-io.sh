#!/bin/sh
# shellcheck source=../lib.sh disable=SC2034,SC2086,SC2046,SC2119 # SCENARIO is read by lib.sh; pid lists split on purpose
# io: direct writes to /dev/ram0 (brd) under --max-iobps=4M run at <= 1.2 x 4 MiB/s, and the
# job's io.max names the device's MAJ:MIN with those values; unthrottled they run faster. A
# server with no usable io device rejects io limits with FAILED_PRECONDITION, and one given a
# device that does not exist refuses to start and names it.
. /jw/lib.sh
SCENARIO=io
DD="dd if=/dev/zero of=/dev/ram0 bs=1M count=16 oflag=direct"
BYTES=$((16 * MIB))
DEV=$(cat /sys/block/ram0/dev 2>/dev/null)
[ -n "$DEV" ] || {
    fail io "/dev/ram0 missing (brd not loaded)"
    exit 1
}
# Jobs run as nobody: the scratch device is theirs to write (a test device, not a real disk).
chmod 0666 /dev/ram0
server_up

# elapsed_s: wall time of the job in JSON, from its start and end times.
elapsed_s() { calc "($(jf end_time_unix_ns) - $(jf start_time_unix_ns)) / 1e9" "%.2f"; }

# shellcheck disable=SC2086 # DD is a command line, split on purpose
if ! create --max-iobps=4M -- $DD; then
    fail io.limit "$ERR"
else
    ID=$JOB
    iomax=
    if wait_file "$(cgdir "$ID")/io.max" 5; then
        iomax=$(grep "^$DEV " "$(cgdir "$ID")/io.max")
    fi
    if ! wait_final "$ID" 30; then
        fail io.limit "$ERR"
    else
        el=$(elapsed_s)
        rate=$(calc "$BYTES / $MIB / $el" "%.2f")
        wr=$(jf io_write_bytes)
        if [ "$(jf status)" != COMPLETED ]; then
            fail io.limit "dd ended $(jf status)/$(jf reason) exit $(jf exit_code): $(output "$ID" | tail -n 2 | tr '\n' ' ')"
        elif ! echo "$iomax" | grep -q "^$DEV rbps=4194304 wbps=4194304 "; then
            fail io.limit "io.max of the job reads '$iomax', want '$DEV rbps=4194304 wbps=4194304 ...'"
        elif ! is "$rate <= 1.2 * 4"; then
            fail io.limit "16 MiB written in ${el}s = $rate MiB/s under --max-iobps=4M (want <= 4.8)"
        elif ! is "${wr:-0} >= $BYTES"; then
            fail io.limit "usage.io_write_bytes=${wr:-missing}, want >= $BYTES"
        else
            pass io.limit "$rate MiB/s under 4 MiB/s (16 MiB in ${el}s); io.max '$iomax'; io_write_bytes=$wr"
        fi
    fi
fi

# shellcheck disable=SC2086
if ! create -- $DD || ! wait_final "$JOB" 30; then
    fail io.unlimited "$ERR"
else
    el=$(elapsed_s)
    urate=$(calc "$BYTES / $MIB / $el" "%.1f")
    if [ "$(jf status)" != COMPLETED ]; then
        fail io.unlimited "dd ended $(jf status)/$(jf reason) exit $(jf exit_code)"
    elif ! is "$urate > 1.2 * 4"; then
        fail io.unlimited "unthrottled dd ran at only $urate MiB/s: the limit check above proves nothing"
    else
        pass io.unlimited "$urate MiB/s without a limit"
    fi
fi
server_stop
[ "$SERVER_RC" = 0 ] || fail io.shutdown "server exit status $SERVER_RC after SIGTERM, want 0"

# No usable io device: /sys/block of this VM holds only virtual disks (ram0), so a server with
# no --io-device has nothing io.max could name.
JSON=
if ! server_start noio 50052 /jobworker-noio; then
    fail io.nodevice "server without --io-device does not start (it should, and refuse io limits only): $SERVER_ERR"
else
    if out=$(jc create --max-iobps=4M -- true); then
        fail io.nodevice "--max-iobps=4M accepted by a server with no io device (job '$out')"
    else
        msg=$(jc_err)
        case "$msg" in
        "jobctl: FAILED_PRECONDITION: "*io* | "jobctl: INVALID_ARGUMENT: "*io*)
            if create -- true && wait_final "$JOB" 10 && [ "$(jf status)" = COMPLETED ]; then
                pass io.nodevice "rejected: $msg; a job without io limit runs"
            else
                fail io.nodevice "io limit rejected ($msg) but a plain job does not run: $ERR $(jf status)"
            fi
            ;;
        *) fail io.nodevice "want 'jobctl: FAILED_PRECONDITION: ...io...', got: $msg" ;;
        esac
    fi
    if ! server_stop || [ "$SERVER_RC" != 0 ]; then
        fail io.shutdown "no-device server: exit status ${SERVER_RC:-?} after SIGTERM, want 0"
    fi
fi

# A device that does not exist is an operator's typo: refuse to start, and say which.
if server_start baddev 50053 /jobworker-baddev --io-device /dev/nosuch; then
    fail io.baddevice "server started with --io-device /dev/nosuch"
    server_stop
else
    case "$SERVER_ERR" in
    *"exited with status "[1-9]*/dev/nosuch*) pass io.baddevice "refused: $(grep -v '^----' "$SERVER_LOG" | grep -m1 /dev/nosuch)" ;;
    *) fail io.baddevice "want a non-zero exit naming /dev/nosuch, got: $SERVER_ERR" ;;
    esac
fi
