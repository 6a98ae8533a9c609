#!/usr/bin/env bash
# Start / stop a REAL systemd user manager (and a real journald) for the
# unprivileged test user `giskard-svc`, on a machine where systemd is installed
# but is not PID 1 (Debian 12 CI / dev VMs).
#
# Usage (as root):
#   eval "$(bash .ci/systemd-user-session.sh start)"   # prints GISKARD_SVC_* lines
#   bash .ci/systemd-user-session.sh status            # prints them if running, else exit 1
#   bash .ci/systemd-user-session.sh stop              # idempotent
#
# stdout carries only the GISKARD_SVC_* lines; all progress goes to stderr.
# Run `apt-get install` BEFORE `start`: while /run/systemd/system exists, tools
# (apt, invoke-rc.d, deb-systemd-helper) believe systemd is PID 1.
set -euo pipefail

readonly SVC_USER=giskard-svc
readonly STATE_DIR=/run/giskard-svc-session
readonly STATE_FILE=$STATE_DIR/state
# The lock lives outside STATE_DIR because `stop` deletes STATE_DIR.
readonly LOCK_FILE=/run/giskard-svc-session.lock
readonly MANAGER_BIN=/lib/systemd/systemd
readonly JOURNALD_BIN=/lib/systemd/systemd-journald
readonly JOURNAL_RUN_DIR=/run/systemd/journal
readonly USER_PATH=/usr/local/bin:/usr/bin:/bin
readonly START_TIMEOUT=${GISKARD_SVC_START_TIMEOUT:-20}   # seconds, whole start
readonly STOP_TIMEOUT=${GISKARD_SVC_STOP_TIMEOUT:-10}     # seconds, per process
readonly PROG=${0##*/}

STEP=""          # what `start` is doing now; named in the error line on failure
ERR_MSG=""       # die()'s message; on_exit prints it last (after a failed start cleaned up)
IN_START=0       # 1 while start has things running that a failure must stop
SVC_UID="" SVC_GID="" SVC_HOME="" SVC_SHELL="" RUNTIME_DIR=""

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

die() {
    # The EXIT trap prints the message (after a failed start has cleaned up),
    # so the one error line is the last thing on stderr.
    local where=""
    [[ -z $STEP ]] || where="step '$STEP': "
    ERR_MSG="error: $where$*"
    exit 1
}

now_ms() {
    # EPOCHREALTIME (bash >= 5) gives sub-second deadlines without forking date.
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
}

# --- state file: KEY=VALUE lines, parsed (never sourced) -------------------

state_get() {
    # state_get KEY -> value or empty. Missing file/key is not an error.
    [[ -f $STATE_FILE ]] || return 0
    local k v
    while IFS='=' read -r k v; do
        if [[ $k == "$1" ]]; then
            printf '%s\n' "$v"
            return 0
        fi
    done <"$STATE_FILE"
}

state_set() {
    # Written after every step so that a failed start (or a later `stop`)
    # knows exactly what to undo.
    local tmp=$STATE_FILE.tmp
    (
        umask 077   # root only: the file names PIDs that stop will kill
        {
            if [[ -f $STATE_FILE ]]; then grep -v "^$1=" "$STATE_FILE" || true; fi
            printf '%s=%s\n' "$1" "$2"
        } >"$tmp"
    )
    mv -f "$tmp" "$STATE_FILE"
}

record_created() {
    # record_created KEY PATH: remember, before we create PATH, whether it was
    # already there (then `stop` must leave it alone).
    if [[ -e $2 ]]; then state_set "$1" 0; else state_set "$1" 1; fi
}

# --- processes: identify by PID + start time (PIDs can be reused) ----------

proc_starttime() {
    # Field 22 of /proc/PID/stat; cut after the last ')' because comm may
    # contain spaces or parentheses. Prints nothing if the PID is gone or a zombie.
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    rest=${stat##*) }
    # rest starts at field 3 (state): field 22 is word 20 of rest.
    # shellcheck disable=SC2086  # word splitting is the point here
    set -- $rest
    [[ $1 == Z ]] && return 0   # a zombie is dead for our purposes
    printf '%s\n' "${20}"
}

proc_alive() {
    # proc_alive PID STARTTIME: true if that very process still runs.
    [[ -n $1 && -n $2 ]] || return 1
    [[ $(proc_starttime "$1") == "$2" ]]
}

stop_process() {
    # stop_process NAME PID STARTTIME: SIGTERM, wait with a deadline, SIGKILL.
    local name=$1 pid=$2 st=$3 deadline
    proc_alive "$pid" "$st" || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(($(now_ms) + STOP_TIMEOUT * 1000))
    while proc_alive "$pid" "$st"; do
        if (($(now_ms) > deadline)); then
            log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$(($(now_ms) + 5000))
            while proc_alive "$pid" "$st" && (($(now_ms) < deadline)); do sleep 0.05; done
            break
        fi
        sleep 0.05
    done
}

LAUNCHED_PID=""
launch_detached() {
    # launch_detached PIDFILE LOGFILE SCRIPT ARGS...: runs `bash -c SCRIPT` in a
    # new session with every stream redirected (so callers using pipes, e.g.
    # subprocess.run(capture_output=True), are not held open), then waits for
    # the child to write its own PID into LAUNCHED_PID (a global, not stdout:
    # die() must not run in a command substitution). `setsid -f` always forks,
    # so $! would not be the right PID; the child reports $$ itself.
    local pidfile=$1 logfile=$2 script=$3 deadline
    LAUNCHED_PID=""
    shift 3
    rm -f "$pidfile"
    # 9>&-: the lock fd must not leak into long-lived children (it would stay held).
    setsid -f bash -c "$script" bash "$@" </dev/null >>"$logfile" 2>&1 9>&-
    deadline=$(($(now_ms) + 5000))
    until [[ -s $pidfile ]]; do
        (($(now_ms) < deadline)) || die "child did not report its PID (see $logfile)"
        sleep 0.01
    done
    LAUNCHED_PID=$(<"$pidfile")
}

# --- user ------------------------------------------------------------------

load_user() {
    local entry
    entry=$(getent passwd "$SVC_USER") || return 1
    IFS=: read -r _ _ SVC_UID SVC_GID _ SVC_HOME SVC_SHELL <<<"$entry"
    RUNTIME_DIR=/run/user/$SVC_UID
}

as_user() {
    # Run a command as the test user with the same clean environment the
    # manager has; cwd / because the caller's cwd may be unreadable for it.
    (cd / && exec setpriv --reuid="$SVC_UID" --regid="$SVC_GID" --init-groups \
        env -i XDG_RUNTIME_DIR="$RUNTIME_DIR" HOME="$SVC_HOME" USER="$SVC_USER" \
        LOGNAME="$SVC_USER" PATH="$USER_PATH" SHELL="$SVC_SHELL" "$@" </dev/null)
}

system_state() {
    # Prints the manager state (running, degraded, starting, ...). It exits 1
    # for degraded, so only stdout counts.
    as_user timeout "$1" systemctl --user --no-pager is-system-running --wait 2>/dev/null || true
}

print_env_lines() {
    printf 'GISKARD_SVC_USER=%s\n' "$SVC_USER"
    printf 'GISKARD_SVC_UID=%s\n' "$SVC_UID"
    printf 'GISKARD_SVC_HOME=%s\n' "$SVC_HOME"
    printf 'GISKARD_SVC_RUNTIME_DIR=%s\n' "$RUNTIME_DIR"
}

session_running() {
    # The session recorded in the state file is complete and answers.
    [[ -f $STATE_FILE ]] || return 1
    load_user || return 1
    [[ $(state_get uid) == "$SVC_UID" ]] || return 1
    proc_alive "$(state_get manager_pid)" "$(state_get manager_starttime)" || return 1
    proc_alive "$(state_get journald_pid)" "$(state_get journald_starttime)" || return 1
    [[ -S $RUNTIME_DIR/systemd/private && -d /run/systemd/system ]] || return 1
    case $(system_state 5) in running | degraded) return 0 ;; esac
    return 1
}

foreign_journald() {
    # A journald we did not start (e.g. a leftover whose state file is gone)
    # would fight ours for /run/systemd/journal's sockets.
    local exe real p ours
    real=$(readlink -f "$JOURNALD_BIN")
    ours=$(state_get journald_pid)
    for exe in /proc/[0-9]*/exe; do
        [[ $(readlink "$exe" 2>/dev/null) == "$real" ]] || continue
        p=${exe#/proc/}
        p=${p%/exe}
        [[ $p == "$ours" ]] && continue
        echo "$p"
        return 0
    done
    return 1
}

# --- stop ------------------------------------------------------------------

user_pids() {
    # Live (non-zombie) processes of a uid. Zombies must not count: PID 1 here
    # (not systemd) reaps our detached orphans only after a while, and pgrep
    # would list them, making every stop wait for nothing.
    # (ps exits 1 when the uid has no process at all: not an error here.)
    { ps -o pid=,stat= -u "$1" 2>/dev/null || true; } | awk '$2 !~ /^Z/ { print $1 }'
}

kill_user_leftovers() {
    # Units that ignored the manager's stop, or processes tests started with
    # `runuser`/`su`: the test user owns nothing that must survive a stop.
    local uid=$1 pids deadline
    pids=$(user_pids "$uid")
    [[ -n $pids ]] || return 0
    log "killing leftover processes of $SVC_USER: $(echo "$pids" | tr '\n' ' ')"
    # shellcheck disable=SC2086  # one PID per word
    kill -TERM $pids 2>/dev/null || true
    # Short grace: whatever is still here already outlived the manager's stop.
    deadline=$(($(now_ms) + 1000))
    while [[ -n $(user_pids "$uid") ]] && (($(now_ms) < deadline)); do sleep 0.05; done
    pids=$(user_pids "$uid")
    # shellcheck disable=SC2086
    [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
}

stop_session() {
    # Undo everything recorded in the state file. Every step tolerates "already
    # gone", so stop is idempotent and also serves as cleanup for a failed start.
    local uid cg
    if [[ -f $STATE_FILE ]]; then
        # Stopping the manager (SIGTERM = `systemctl --user exit`) stops its units.
        stop_process "user manager" "$(state_get manager_pid)" "$(state_get manager_starttime)"
    fi

    uid=$(state_get uid)
    [[ -n $uid ]] || uid=$(id -u "$SVC_USER" 2>/dev/null || true)
    if [[ -n $uid ]]; then
        kill_user_leftovers "$uid"
    fi

    if [[ -f $STATE_FILE ]]; then
        stop_process journald "$(state_get journald_pid)" "$(state_get journald_starttime)"
        if [[ $(state_get created_run_systemd_system) == 1 ]]; then
            rm -rf /run/systemd/system
        fi
        # journald's sockets would otherwise make clients (logger, the worker's
        # journal detection) believe a journald is listening.
        if [[ $(state_get created_journal_run_dir) == 1 ]]; then
            rm -rf "$JOURNAL_RUN_DIR"
        fi
        # Delete the journal files only when their directory was ours: then
        # every session starts with an empty journal, and an earlier run's lines
        # cannot show up in the next run's `journalctl --user -u NAME`.
        local mid
        mid=$(cat /etc/machine-id 2>/dev/null || true)
        if [[ -n $mid && $(state_get created_journal_machine_dir) == 1 ]]; then
            rm -rf "/var/log/journal/$mid"
        fi
        if [[ $(state_get created_var_log_journal) == 1 ]]; then
            rmdir /var/log/journal 2>/dev/null || true
        fi
        if [[ $(state_get created_run_log_journal) == 1 ]]; then
            rm -rf /run/log/journal
        fi
    fi

    if [[ -n $uid ]]; then
        # The runtime dir holds the manager's sockets; a stale systemd/private
        # would make the next start's readiness check pass too early.
        if [[ -d /run/user/$uid ]]; then
            rm -rf "/run/user/$uid" 2>/dev/null || log "warning: could not remove /run/user/$uid"
        fi
        # Empty cgroup directories left by the manager (init.scope, app.slice, ...);
        # rmdir bottom-up, it only succeeds once they hold no processes.
        for cg in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
            [[ -d $cg/user.slice/user-$uid.slice ]] || continue
            find "$cg/user.slice/user-$uid.slice" -depth -type d -exec rmdir {} + 2>/dev/null || true
            rmdir "$cg/user.slice" 2>/dev/null || true
        done
    fi

    rm -rf "$STATE_DIR"
}

# --- start -----------------------------------------------------------------

on_exit() {
    # Any unexpected failure (set -e) gets a one-line error naming the step;
    # a failed start also stops whatever it had started, and then says so last.
    local rc=$?
    ((rc == 0)) && return 0
    set +e
    if ((IN_START)); then
        local f
        for f in journald.log manager.log; do
            [[ -s $STATE_DIR/$f ]] || continue
            log "last lines of $f:"
            tail -n 15 "$STATE_DIR/$f" | sed 's/^/    /' >&2
        done
        stop_session >/dev/null 2>&1
    fi
    [[ -n $ERR_MSG ]] || ERR_MSG="error: step '$STEP' failed (exit $rc)"
    if ((IN_START)); then ERR_MSG+=" (cleaned up)"; fi
    log "$ERR_MSG"
    exit "$rc"
}

wait_until() {
    # wait_until DEADLINE_MS DESCRIPTION CMD...: poll CMD every 50 ms.
    local deadline=$1 what=$2
    shift 2
    until "$@"; do
        (($(now_ms) < deadline)) || die "timed out waiting for $what"
        sleep 0.05
    done
}

pid_of_alive() {
    # For wait_until: the process must still be running while we wait.
    proc_alive "$1" "$2" || die "$3 exited during startup (see $STATE_DIR/$4)"
}

journald_ready() {
    pid_of_alive "$1" "$2" journald journald.log
    [[ -S $JOURNAL_RUN_DIR/stdout && -S $JOURNAL_RUN_DIR/socket ]]
}

manager_ready() {
    pid_of_alive "$1" "$2" "user manager" manager.log
    [[ -S $RUNTIME_DIR/systemd/private ]]
}

start_session() {
    local deadline t0 pid st cg state
    t0=$(now_ms)
    deadline=$((t0 + START_TIMEOUT * 1000))

    STEP="check session"
    if session_running; then
        log "session already running (manager pid $(state_get manager_pid))"
        print_env_lines
        return 0
    fi
    # Anything half-alive from an earlier run (stale state, crashed manager)
    # is cleaned up first, so start always begins from a known state.
    STEP="clean up stale session"
    stop_session

    IN_START=1

    STEP="preflight"
    local b
    for b in "$MANAGER_BIN" "$JOURNALD_BIN" setpriv setsid systemctl useradd ps; do
        command -v "$b" >/dev/null || die "$b not found"
    done
    [[ -d /sys/fs/cgroup/systemd && -d /sys/fs/cgroup/unified ]] ||
        die "expected a hybrid cgroup hierarchy (/sys/fs/cgroup/systemd and /sys/fs/cgroup/unified)"
    if pid=$(foreign_journald); then
        die "a systemd-journald not started by this script is running (pid $pid); stop it first"
    fi

    STEP="create user"
    if ! load_user; then
        log "creating user $SVC_USER"
        # Let useradd pick the uid (>= UID_MIN=1000; 1000 may be taken).
        useradd -m -s /bin/bash "$SVC_USER" >&2 || die "useradd failed"
        load_user || die "user $SVC_USER missing after useradd"
    fi
    ((SVC_UID >= 1000)) || die "$SVC_USER has uid $SVC_UID; a regular user (uid >= 1000) is needed"
    [[ -d $SVC_HOME ]] || install -d -m 0755 -o "$SVC_UID" -g "$SVC_GID" "$SVC_HOME"

    install -d -m 0700 "$STATE_DIR"
    rm -f "$STATE_FILE"
    state_set uid "$SVC_UID"

    STEP="create /run/systemd/system"
    # systemd --user refuses to start without it ("not booted with systemd").
    record_created created_run_systemd_system /run/systemd/system
    install -d -m 0755 /run/systemd/system

    STEP="start journald"
    # Per-user journal files (user-UID.journal, readable by that user without
    # the systemd-journal group) exist only in persistent storage, so
    # /var/log/journal must exist BEFORE journald starts.
    record_created created_var_log_journal /var/log/journal
    if [[ ! -d /var/log/journal ]]; then
        install -d -m 2755 -g systemd-journal /var/log/journal 2>/dev/null ||
            install -d -m 0755 /var/log/journal
    fi
    local mid
    mid=$(cat /etc/machine-id 2>/dev/null) || die "/etc/machine-id is missing"
    record_created created_journal_machine_dir "/var/log/journal/$mid"
    record_created created_run_log_journal /run/log/journal
    record_created created_journal_run_dir "$JOURNAL_RUN_DIR"
    # Without the "flushed" flag journald writes everything to the runtime
    # journal in /run/log/journal, never splitting per user, until someone runs
    # `journalctl --flush`. And on this machine /run is NOT a tmpfs, so after a
    # flush journald refuses to delete the runtime journal ("Attempted to
    # remove disk file system ... we can't allow that"), reopens it, and keeps
    # writing there: `journalctl --user` then fails with "insufficient
    # permissions". So: no runtime journal, flag set, before journald starts.
    # No journald is running (checked above), so all of this is stale.
    rm -rf "/run/log/journal/$mid"
    rm -f "$JOURNAL_RUN_DIR"/socket "$JOURNAL_RUN_DIR"/stdout "$JOURNAL_RUN_DIR"/dev-log \
        "$JOURNAL_RUN_DIR"/io.systemd.journal
    install -d -m 0755 "$JOURNAL_RUN_DIR"
    touch "$JOURNAL_RUN_DIR/flushed"
    # Clean environment: nothing of the caller's (NOTIFY_SOCKET, LISTEN_FDS, ...)
    # must reach journald.
    # shellcheck disable=SC2016  # $$ and $1 are expanded by the child shell
    launch_detached "$STATE_DIR/journald.pid" "$STATE_DIR/journald.log" \
        'echo $$ >"$1.tmp" && mv -f "$1.tmp" "$1" && cd / && exec env -i PATH="$3" "$2"' \
        "$STATE_DIR/journald.pid" "$JOURNALD_BIN" /usr/sbin:/usr/bin:/sbin:/bin
    pid=$LAUNCHED_PID
    st=$(proc_starttime "$pid")
    state_set journald_pid "$pid"
    state_set journald_starttime "$st"
    wait_until "$deadline" "journald sockets in $JOURNAL_RUN_DIR" journald_ready "$pid" "$st"

    STEP="prepare runtime dir"
    # Fresh every time: stale sockets from an earlier manager must not count as ready.
    rm -rf "$RUNTIME_DIR"
    install -d -m 0755 /run/user
    install -d -m 0700 -o "$SVC_UID" -g "$SVC_GID" "$RUNTIME_DIR"

    STEP="delegate cgroups"
    # Without a delegated cgroup the manager exits 1 silently while creating
    # init.scope. Hybrid hierarchy: the same path in both, owned by the user.
    local cgs=()
    for cg in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
        cg=$cg/user.slice/user-$SVC_UID.slice/user@$SVC_UID.service
        mkdir -p "$cg"
        chown -R "$SVC_UID:$SVC_GID" "$cg"
        cgs+=("$cg")
    done

    STEP="start user manager"
    # The child writes its own PID into both cgroup.procs as root, then drops
    # to the user (setpriv: no PAM, so no pam_systemd/logind round trip) with a
    # clean environment and execs the manager.
    # --log-target: under user@.service the manager's stderr is a journal
    # stream; here it is a file, and then the manager logs nothing at all (no
    # "Started ...", "Main process exited ...", "Failed with result ..." in
    # `journalctl --user -u NAME`). Forcing the journal restores those lines.
    # shellcheck disable=SC2016  # expanded by the child shell
    launch_detached "$STATE_DIR/manager.pid" "$STATE_DIR/manager.log" \
        'echo $$ >"$2/cgroup.procs" && echo $$ >"$3/cgroup.procs" &&
         echo $$ >"$1.tmp" && mv -f "$1.tmp" "$1" && cd / &&
         exec setpriv --reuid="$4" --regid="$5" --init-groups \
           env -i XDG_RUNTIME_DIR="$6" HOME="$7" USER="$8" LOGNAME="$8" PATH="$9" SHELL="${10}" \
           "${11}" --user --log-target=journal-or-kmsg' \
        "$STATE_DIR/manager.pid" "${cgs[0]}" "${cgs[1]}" "$SVC_UID" "$SVC_GID" \
        "$RUNTIME_DIR" "$SVC_HOME" "$SVC_USER" "$USER_PATH" "$SVC_SHELL" "$MANAGER_BIN"
    pid=$LAUNCHED_PID
    st=$(proc_starttime "$pid")
    state_set manager_pid "$pid"
    state_set manager_starttime "$st"

    STEP="wait for user manager"
    wait_until "$deadline" "$RUNTIME_DIR/systemd/private" manager_ready "$pid" "$st"
    local left=$(((deadline - $(now_ms)) / 1000))
    ((left >= 1)) || left=1
    state=$(system_state "$left")
    case $state in
        running | degraded) ;;
        *) die "systemctl --user is-system-running --wait printed '${state:-nothing}' within ${left}s" ;;
    esac

    IN_START=0
    log "session ready: manager pid $pid ($state), journald pid $(state_get journald_pid), in $(($(now_ms) - t0)) ms"
    print_env_lines
}

main() {
    local cmd=${1:-}
    case $cmd in
        start | stop | status) ;;
        *)
            echo "usage: $PROG start|stop|status" >&2
            exit 2
            ;;
    esac
    trap on_exit EXIT
    ((EUID == 0)) || die "must run as root"
    # Serialise concurrent invocations (e.g. parallel pytest workers).
    exec 9>"$LOCK_FILE"
    flock -w 60 9 || die "another invocation holds $LOCK_FILE for over 60 s"
    case $cmd in
        start) start_session ;;
        stop) stop_session ;;
        status)
            STEP="status"
            session_running || die "no session running"
            print_env_lines
            ;;
    esac
}

main "$@"
