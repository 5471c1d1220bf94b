# shellcheck shell=bash disable=SC2016 # job scripts are single-quoted on purpose
# Isolation between jobs and from the host, through the real server (sourced by run.sh): private
# /tmp, /var/tmp and /dev/shm, /dev/stdout and /dev/stderr as the job user, (with
# --job-uid-range) one identity per job, and a read-only host file system. Runs its own servers.

ISO_MARK="jw-iso-$$"

start_server || exit 1

# Job A leaves a file in each shared temporary directory and stays running; job B, running at
# the same time as the same user, sees none of them; after A's end the host has none either.
t_private_tmp() {
    local a b out
    a=$(jc create sh -c 'for d in /tmp /var/tmp /dev/shm; do echo a >$d/'"$ISO_MARK"' || exit 1; done; echo written; sleep 30') || return 1
    for _ in $(seq 100); do
        [ "$(jc stream "$a")" = written ] && break
        sleep 0.05
    done
    expect_eq "$(jc stream "$a")" written "(job A's output)" || return 1
    out=$(jc run sh -c 'for d in /tmp /var/tmp /dev/shm; do ls -A $d | wc -l; cat $d/'"$ISO_MARK"' 2>&1 | grep -c "No such file"; stat -c %a $d; done') || return 1
    expect_eq "$(echo "$out" | tr '\n' ' ')" "0 1 1777 0 1 1777 0 1 1777 " "(job B's view of the temporary directories)" || return 1
    jc stop "$a" >/dev/null || return 1
    for d in /tmp /var/tmp /dev/shm; do
        if [ -e "$d/$ISO_MARK" ]; then
            echo "job A's file $d/$ISO_MARK is on the host" >&2
            return 1
        fi
    done
}
check "jobs get private /tmp, /var/tmp and /dev/shm that vanish with them" t_private_tmp

# /dev/stdout and /dev/stderr re-open the job's output pipe as the job user (nobody here).
t_dev_stdout() {
    local id json out
    id=$(jc create bash -c 'echo out >/dev/stdout; echo err >/dev/stderr; tee /dev/stderr <<<x') || return 1
    wait_status "$id" COMPLETED FAILED || return 1
    json=$(jc -o json get "$id")
    expect_eq "$(json_field "$json" status)" COMPLETED "($(json_field "$json" error))" || return 1
    out=$(jc stream "$id" 2>/dev/null) || return 1
    expect_eq "$(echo "$out" | tr '\n' ' ')" "out x " "(its stdout)" || return 1
    out=$(jc stream "$id" 2>&1 >/dev/null) || return 1
    expect_eq "$(echo "$out" | tr '\n' ' ')" "err x " "(its stderr)" || return 1
}
check "/dev/stdout and /dev/stderr work inside jobs" t_dev_stdout

stop_server || fail "isolation server exit" "non-zero exit status"

# --job-uid-range: each job runs as a uid of its own (a range of two here).
UID0=1879048192
start_server --job-uid-range "$UID0-$((UID0 + 1))" || exit 1

# job_uid ID: the first line of the job's output (its `id -u`), waiting for it.
job_uid() {
    local out
    for _ in $(seq 100); do
        out=$(jc stream "$1" | head -n 1)
        [ -n "$out" ] && break
        sleep 0.05
    done
    echo "$out"
}

t_job_identity() {
    local a b c d ua ub out json
    a=$(jc create sh -c 'id -u; echo secret >secret; echo ready; sleep 30') || return 1
    ua=$(job_uid "$a")
    # B at the same time: another uid, and A's directory (reached relative to B's own, since the
    # data directory is in the host's /tmp) refuses listing, reading and writing.
    b=$(jc create sh -c 'id -u; for t in "ls ../$0" "cat ../$0/secret" "touch ../$0/x"; do $t 2>&1 | grep -c "Permission denied"; done' "$a") || return 1
    wait_status "$b" COMPLETED || return 1
    out=$(jc stream "$b" | tr '\n' ' ')
    ub=${out%% *}
    if [ "$ua" = "$ub" ] || ! [[ "$ua" =~ ^($UID0|$((UID0 + 1)))$ && "$ub" =~ ^($UID0|$((UID0 + 1)))$ ]]; then
        echo "job uids '$ua' and '$ub', want two different ones in $UID0-$((UID0 + 1))" >&2
        return 1
    fi
    expect_eq "$out" "$ub 1 1 1 " "(job B against job A's working directory)" || return 1
    expect_eq "$(stat -c '%u %a' "$T/data/work/$a")" "$ua 700" "(A's working directory)" || return 1
    # Both uids held (A, C): a third job is refused and leaves nothing behind.
    c=$(jc create sleep 30) || return 1
    wait_status "$c" RUNNING || return 1
    if d=$(jc create true 2>"$T/iso.err"); then
        echo "a third job started ($d) with both uids held" >&2
        return 1
    fi
    expect_contains "$(cat "$T/iso.err")" "RESOURCE_EXHAUSTED: no free job identity: all 2 uids of $UID0-$((UID0 + 1)) are held by running jobs" || return 1
    json=$(jc -o json get "$a")
    expect_eq "$(json_field "$json" user)" "dynamic ($ua:$ua)" || return 1
    # After the end both uids serve new jobs again.
    jc stop "$a" >/dev/null && jc stop "$c" >/dev/null || return 1
    [ ! -e "$T/data/work/$a" ] || { echo "A's working directory outlived it" >&2; return 1; }
    a=$(jc create sh -c 'id -u; sleep 30') || return 1
    c=$(jc create sh -c 'id -u; sleep 30') || return 1
    out="$(job_uid "$a") $(job_uid "$c")"
    [ "$out" = "$UID0 $((UID0 + 1))" ] || [ "$out" = "$((UID0 + 1)) $UID0" ] ||
        { echo "after the end the next two jobs run as '$out'" >&2; return 1; }
    jc stop "$a" >/dev/null && jc stop "$c" >/dev/null
}
check "--job-uid-range: a uid per job, working directories private to it, reused after the end" t_job_identity

# A released uid serves the next job: nothing the old job could leave in a world-writable host
# directory outside its private temporary directories (/run/lock, /var/crash, one of the
# operator's, here a fresh 1777 directory under /var/lib) may wait there for it, so the host's
# file system is read-only for jobs (EROFS); the working directory, /tmp, /var/tmp, /dev/shm and
# /dev/null stay writable. Kernel keyrings (per uid, outliving the job) are refused.
t_readonly_host() {
    local ww id out want
    ww=$(mktemp -d /var/lib/jw-it-ww-XXXXXX) && chmod 1777 "$ww" || return 1
    id=$(jc create "$TESTBIN/isoprobe" write "$ww/$ISO_MARK" write ./mine write /tmp/t \
        write /var/tmp/t write /dev/shm/t write /dev/null keyring) || { rmdir "$ww"; return 1; }
    wait_status "$id" COMPLETED FAILED
    out=$(jc stream "$id" | tr '\n' '|')
    if [ -e "$ww/$ISO_MARK" ]; then
        rm -rf "$ww"
        echo "the job left $ww/$ISO_MARK on the host" >&2
        return 1
    fi
    rmdir "$ww" || return 1
    want="write $ww/$ISO_MARK: EROFS|write ./mine: ok|write /tmp/t: ok|write /var/tmp/t: ok|"
    want+="write /dev/shm/t: ok|write /dev/null: ok|keyring: EPERM|"
    expect_eq "$out" "$want" "(the job's writes)"
}
check "read-only host file system for jobs: EROFS in a world-writable host directory, working directory and private tmp writable, no keyrings" t_readonly_host

stop_server || fail "isolation uid-range server exit" "non-zero exit status"
