# shellcheck shell=bash disable=SC2016 # job scripts are single-quoted on purpose
# Isolation between jobs and from the host, through the real server (sourced by run.sh): private
# /tmp, /var/tmp and /dev/shm, /dev/stdout and /dev/stderr as the job user, and (with
# --job-uid-range) one identity per job. Runs its own servers.

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
    out=$(jc stream "$id") || return 1
    expect_eq "$(echo "$out" | tr '\n' ' ')" "out err x x " || return 1
}
check "/dev/stdout and /dev/stderr work inside jobs" t_dev_stdout

stop_server || fail "isolation server exit" "non-zero exit status"
