# shellcheck shell=bash
# Stop storm (issue 9; sourced by run.sh): with --stop-grace 5s, eight StopJob calls at once on
# jobs that ignore SIGTERM must not stall the server: GetJob/GetJobs p99 stays under 100 ms and
# a follower of another job gets each line within 100 ms of its writing, while every stop still
# answers STOPPED after the grace period. The measurement is the grpcio client's `stop-storm`
# scenario (tests/integration/pyclient.py): a warm channel, since a jobctl process per call costs
# ~40 ms by itself. Runs its own server.

STORM_GRACE=5
start_server --stop-grace "${STORM_GRACE}s" || exit 1

t_stop_storm() {
    py stop-storm "$STORM_GRACE"
}
check "stop storm: 8 StopJob of TERM-ignoring jobs (grace ${STORM_GRACE} s) stall neither GetJob/GetJobs (p99 < 100 ms) nor a follower" t_stop_storm
# The figures of the run, pass or fail.
sed -n 's/^\(storm\|GetJob\|follower\|late\|stops\).*/    figure: &/p' "$T/check.out"

stop_server || fail "stop-storm server exit" "non-zero exit status"
