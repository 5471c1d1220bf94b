#!/bin/sh
# shellcheck source=../lib.sh disable=SC2034 # SCENARIO is read by lib.sh
# admission: with enforced limits, the memory capacity queues jobs whose memory.max sum passes
# it and refuses one that could never fit; a policy file's [ceiling] refuses a job above it
# (its default limit included, which the server warns about at start); a queued job starts
# once the running one ends.
. /jw/lib.sh
SCENARIO=admission
CONF=/tmp/admission.conf
printf '[ceiling]\nmemory = 256M\n' >"$CONF"
server_up --config "$CONF" --default-memory 300M --capacity-memory 200M

if ! grep -q "default-memory 314572800 is above \[ceiling\] memory 268435456" "$SERVER_LOG"; then
    fail admission.warn "no warning about a default above its ceiling in the server log"
else
    pass admission.warn "a default above its ceiling is logged at start"
fi

if jc create -- true >/dev/null; then
    fail admission.ceiling "a job with the default 300M ran under [ceiling] memory = 256M"
elif ! grep -q "PERMISSION_DENIED.*memory_bytes 314572800 is above the ceiling 268435456" "$JC_ERR"; then
    fail admission.ceiling "refusal does not name the ceiling: $(jc_err)"
else
    pass admission.ceiling "PERMISSION_DENIED naming [ceiling] memory"
fi

if jc create --max-memory=250M -- true >/dev/null; then
    fail admission.never "a 250M job was accepted under --capacity-memory 200M"
elif ! grep -q "RESOURCE_EXHAUSTED.*--capacity-memory" "$JC_ERR"; then
    fail admission.never "refusal does not name the capacity: $(jc_err)"
else
    pass admission.never "RESOURCE_EXHAUSTED naming --capacity-memory"
fi

if ! create --max-memory=150M -- sleep 30 || ! wait_running "$JOB" 20; then
    fail admission.queue "$ERR"
else
    A=$JOB
    if ! create --max-memory=100M -- true; then
        fail admission.queue "$ERR"
    else
        B=$JOB
        wait_status "$B" 5 QUEUED RUNNING COMPLETED FAILED STOPPED
        if [ "$(jf status)" != QUEUED ]; then
            fail admission.queue "150M + 100M under 200M: the second job is $(jf status), want QUEUED"
        elif ! jc stop "$A" >/dev/null || ! wait_final "$B" 30; then
            fail admission.queue "the queued job did not end after the running one was stopped: $(jc_err)"
        elif [ "$(jf status)" != COMPLETED ]; then
            fail admission.queue "the queued job ended $(jf status)/$(jf reason), want COMPLETED"
        else
            pass admission.queue "150M running, 100M queued under 200M, started and completed once the first ended"
        fi
    fi
fi
finish
