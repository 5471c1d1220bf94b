# shellcheck shell=bash disable=SC2016 # job scripts are single-quoted on purpose
# The job's environment (sourced by run.sh; issue 14): -e and --env-file reach the job on top
# of the base, PATH and LANG may be changed, HOME and JOBWORKER_JOB_ID may not, bad entries are
# refused naming the entry and create nothing; viewers do not see the values.

start_server || exit 1

t_env() {
    local out id before
    printf '# a comment\n\nFROM_FILE=a b  c\nSECOND=x=y\n' >"$T/env.file"
    out=$(jc run -e GREETING=hello -e EMPTY= --env-file "$T/env.file" -e LANG=C \
        sh -c 'echo "$GREETING|$EMPTY|$FROM_FILE|$SECOND|$LANG|${HOME:+home}"; echo "$JOBWORKER_JOB_ID"') || return 1
    expect_eq "$(head -n 1 <<<"$out")" "hello||a b  c|x=y|C|home" || return 1
    [[ "$(tail -n 1 <<<"$out")" =~ ^[0-9a-f-]{36}$ ]] || { echo "JOBWORKER_JOB_ID missing: $out" >&2; return 1; }
    out=$(jc run -e PATH=/usr/bin:/bin sh -c 'echo $PATH') || return 1
    expect_eq "$out" /usr/bin:/bin "(PATH may be set)" || return 1
    before=$(jc -o json list | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
    out=$(jc create -e HOME=/root true 2>&1) && { echo "HOME accepted" >&2; return 1; }
    expect_contains "$out" "INVALID_ARGUMENT: env[0]: HOME is set by the server and cannot be changed" || return 1
    out=$(jc create -e 'A B=1' true 2>&1) && { echo "a bad name accepted" >&2; return 1; }
    expect_contains "$out" "env[0]: name 'A B' is not a variable name" || return 1
    out=$(jc create -e A=1 -e A=2 true 2>&1) && { echo "a duplicate accepted" >&2; return 1; }
    expect_contains "$out" "env[1]: A is already set by env[0]" || return 1
    out=$(jc create -e NOVALUE true 2>&1) && { echo "an entry without = accepted" >&2; return 1; }
    expect_contains "$out" "is not NAME=VALUE" || return 1
    expect_eq "$(jc -o json list | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')" "$before" "(refused creates left no job)" || return 1
    id=$(jc create -e TOKEN=secret true) || return 1
    expect_contains "$(jc -o json get "$id")" '"env":["TOKEN=secret"]' || return 1
    expect_contains "$(jc_as viewer -o json get "$id")" '"env":[]' "(a viewer sees no values)" || return 1
}
check "environment: -e and --env-file reach the job; HOME, bad names, duplicates refused; viewers see none" t_env

stop_server || fail "env server exit" "non-zero exit status"
