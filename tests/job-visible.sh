# shellcheck shell=bash
# Jobs run with private /tmp, /var/tmp and /dev/shm (docs/security.md), so a program a test or
# benchmark job runs must live where a job can see it. job_visible_dir DIR prints DIR when it is
# outside those, else a fresh copy of DIR's files under /var/lib (mode 0755, for the jobs' own
# uids); the caller removes the copy (job_visible_cleanup DIR) when done.
job_visible_dir() {
    local src=$1 copy
    case "$src" in
    /tmp/* | /var/tmp/* | /dev/shm/*)
        copy=$(mktemp -d /var/lib/jw-jobbin-XXXXXX) || return 1
        chmod 755 "$copy" && cp -p "$src"/* "$copy/" || return 1
        echo "$copy"
        ;;
    *) echo "$src" ;;
    esac
}

# job_visible_cleanup DIR: removes DIR if job_visible_dir made it.
job_visible_cleanup() {
    case "$1" in /var/lib/jw-jobbin-*) rm -rf "$1" ;; esac
}
