#!/bin/sh
# shellcheck source=../lib.sh disable=SC2034,SC2086,SC2046,SC2119 # SCENARIO is read by lib.sh; pid lists split on purpose
# hygiene: what job-init hands to the user's command. The commands below are exec'd directly by
# job-init (no shell in between), so they show exactly what they inherited: fds 0 1 2 only (plus
# the directory ls itself opens), stdin /dev/null, stdout and stderr two pipes of their own,
# empty signal mask, no ignored signals, no_new_privs, own session and process group,
# oom_score_adj 0.
# The server gets a bad inheritance to not pass on: an extra open fd 7, SIGHUP ignored (and
# SIGINT/SIGQUIT, as for any background command of a shell), oom_score_adj -500.
. /jw/lib.sh
SCENARIO=hygiene
trap '' HUP
echo -500 >/proc/self/oom_score_adj
exec 7</etc/hosts
server_up
exec 7<&-
trap - HUP
echo 0 >/proc/self/oom_score_adj
sig=$(awk '$1 == "SigIgn:" { print $2 }' "/proc/$SERVER_PID/status")
info "hygiene: server SigIgn $sig, oom_score_adj $(cat "/proc/$SERVER_PID/oom_score_adj"), fd 7 $(readlink "/proc/$SERVER_PID/fd/7")"

# run_job NAME CMD...: runs a job to completion; OUT holds its output.
run_job() {
    n=$1
    shift
    OUT=
    if ! create -- "$@" || ! wait_final "$JOB" 10; then
        fail "$n" "$ERR"
        return 1
    fi
    OUT=$(output "$JOB")
    if [ "$(jf status)" != COMPLETED ]; then
        fail "$n" "'$*' ended $(jf status)/$(jf reason) exit $(jf exit_code) error '$(jf error)': $OUT"
        return 1
    fi
}

if run_job hygiene.fds ls -l /proc/self/fd; then
    fds=$(echo "$OUT" | awk '/ -> / { printf "%s=%s ", $(NF - 2), $NF }')
    t0='' t1='' t2='' extra=''
    for kv in $fds; do
        fd=${kv%%=*} tgt=${kv#*=}
        case "$fd" in
        0) t0=$tgt ;;
        1) t1=$tgt ;;
        2) t2=$tgt ;;
        *) case "$tgt" in /proc/*/fd) ;; *) extra="$extra $kv" ;; esac ;;
        esac
    done
    if [ -n "$extra" ]; then
        fail hygiene.fds "job inherited extra fds:$extra (all: $fds)"
    elif [ "$t0" != /dev/null ]; then
        fail hygiene.fds "stdin is '$t0', want /dev/null (all: $fds)"
    elif case "$t1$t2" in pipe:*pipe:*) false ;; *) true ;; esac || [ "$t1" = "$t2" ]; then
        fail hygiene.fds "stdout '$t1' and stderr '$t2' are not two pipes of their own (all: $fds)"
    else
        pass hygiene.fds "$fds(the /proc/*/fd one is ls's own directory)"
    fi
fi

if run_job hygiene.proc cat /proc/self/status /proc/self/stat /proc/self/oom_score_adj; then
    field() { echo "$OUT" | awk -v k="$1:" '$1 == k { print $2 }'; }
    blk=$(field SigBlk) ign=$(field SigIgn) nnp=$(field NoNewPrivs) cap=$(field CapEff)
    stat=$(echo "$OUT" | grep -E '^[0-9]+ \(cat\) ')
    pid=${stat%% *}
    rest=$(echo "$stat" | sed 's/^.*) //')
    pgrp=$(echo "$rest" | cut -d' ' -f3) sid=$(echo "$rest" | cut -d' ' -f4)
    oom=$(echo "$OUT" | tail -n 1)

    if [ "$blk" = 0000000000000000 ] && [ "$ign" = 0000000000000000 ]; then
        pass hygiene.signals "SigBlk $blk SigIgn $ign"
    else
        fail hygiene.signals "SigBlk '$blk' SigIgn '$ign', want all zero"
    fi
    if [ "$nnp" = 1 ]; then
        pass hygiene.nnp "NoNewPrivs 1, CapEff $cap"
    else
        fail hygiene.nnp "NoNewPrivs '$nnp', want 1"
    fi
    if [ -n "$pid" ] && [ "$pid" = "$pgrp" ] && [ "$pid" = "$sid" ]; then
        pass hygiene.session "pid $pid leads its own session and process group"
    else
        fail hygiene.session "pid '$pid' pgrp '$pgrp' session '$sid', want all equal (stat: $stat)"
    fi
    if [ "$oom" = 0 ]; then
        pass hygiene.oom "oom_score_adj 0"
    else
        fail hygiene.oom "oom_score_adj '$oom', want 0"
    fi
fi
finish
