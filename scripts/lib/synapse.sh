# shellcheck shell=bash disable=SC2015  # `a && b || fail`: fail if any step fails
# scripts/lib/synapse.sh — a real Synapse (Matrix homeserver) on loopback for
# mailroom's integration tests and demo. Sourced by scripts/stack; it defines
# functions only and changes no shell options.
#
#   synapse_install                      venv + pinned matrix-synapse, only if missing (a cache)
#   synapse_up                           generate config once, start, wait until ready
#   synapse_down                         stop the Synapse recorded in our pid file
#   synapse_status                       one status line; returns 0 if up and answering
#   synapse_register USER PASSWORD [admin]   create (or verify) a user; prints @USER:localhost
#   synapse_env                          prints `export KEY=value` lines
#
# Every function returns non-zero with a message on stderr instead of exiting,
# so callers decide: `synapse_up || die "..."`. They are written to work both
# under `set -euo pipefail` and without it (bash disables -e inside a function
# called from `||`/`if`, so every step checks its own status).
#
# Variables to set before sourcing (defaults make the file usable standalone):
#   REPO    the repository root        default: two levels above this file
#   STATE   the stack's state dir      default: ${MAILROOM_STACK_DIR:-$REPO/.stack}
# They are read when a function runs, not when the file is sourced.
#
# Environment:
#   MAILROOM_SYNAPSE_VENV       virtualenv, outside the state dir so that it survives
#                               `down --purge` and fresh clones
#                               default $HOME/.cache/mailroom/synapse-venv
#   MAILROOM_SYNAPSE_PYTHON     interpreter for creating the venv (>= 3.10)  default python3
#   MAILROOM_SYNAPSE_PORT       client API port on 127.0.0.1                 default 18008
#   MAILROOM_SYNAPSE_RATELIMIT  off (every rc_* limit raised to 1000/s, burst 10000)
#                               or default (Synapse's own limits)            default off
# Uploads are limited to 2 MB (max_upload_size, the homeserver's m.upload.size),
# far below a production server's, so that the tests can go over it cheaply.
# `synapse_up` takes port and rate-limit mode from the environment (the port
# falls back to the one last used in this state dir); when either differs from
# the running server's, it rewrites the override and restarts Synapse. The other
# functions describe the configured server, whatever the environment says.
#
# State, all under $STATE:
#   synapse/homeserver.yaml   generated once by Synapse (signing key, macaroon secret)
#   synapse/mailroom.yaml     our override, rewritten by every `up` (later -c wins
#                             per top-level key); first line records port and mode
#   synapse/log.yaml          logging config: WARNING and above to log/synapse.log
#   synapse/shared_secret     registration shared secret (random, made once, mode 644:
#                             tests that are not root may read it; loopback test server)
#   synapse/homeserver.db     SQLite database;  synapse/media_store/  uploads
#   synapse/registered        users whose password we set or checked:
#                             USER sha256(USER\0PASSWORD) admin|notadmin
#   run/synapse.pid           written by Synapse itself (it daemonizes)
#   log/synapse.log, log/synapse-start.log

SYNAPSE_VERSION=1.163.2      # newest release; requires Python >= 3.10
SYNAPSE_SERVER_NAME=localhost
SYNAPSE_READY_TIMEOUT=60     # seconds `synapse_up` waits for /_matrix/client/versions
SYNAPSE_MAX_UPLOAD=2M        # max_upload_size; the tests upload an attachment over it
SYNAPSE_STOP_TIMEOUT=15      # seconds `synapse_down` waits before SIGKILL

_synapse_err()  { printf 'stack: error: synapse: %s\n' "$*" >&2; }
_synapse_warn() { printf 'stack: warning: synapse: %s\n' "$*" >&2; }
_synapse_info() { printf 'stack: synapse: %s\n' "$*" >&2; }
_synapse_ms_since() { echo $(( (${EPOCHREALTIME/./} - ${1/./}) / 1000 )); }

# Paths, recomputed on every call so that STATE may be set after sourcing.
_synapse_paths() {
    if [[ -z ${REPO:-} ]]; then
        REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || return 1
    fi
    if [[ -z ${STATE:-} ]]; then
        STATE=$(realpath -m -- "${MAILROOM_STACK_DIR:-$REPO/.stack}") || return 1
    fi
    SYN_VENV=${MAILROOM_SYNAPSE_VENV:-$HOME/.cache/mailroom/synapse-venv}
    SYN_PY=$SYN_VENV/bin/python
    SYN_MARKER=$SYN_VENV/mailroom-synapse.version
    SYN_DIR=$STATE/synapse
    SYN_HS_CONF=$SYN_DIR/homeserver.yaml
    SYN_OVERRIDE=$SYN_DIR/mailroom.yaml
    SYN_LOG_CONF=$SYN_DIR/log.yaml
    SYN_SECRET=$SYN_DIR/shared_secret
    SYN_REGISTERED=$SYN_DIR/registered
    SYN_PIDFILE=$STATE/run/synapse.pid
    SYN_LOG=$STATE/log/synapse.log
    SYN_START_LOG=$STATE/log/synapse-start.log
}

# Port and mode recorded in the override's first line:
#   # mailroom-synapse: port=18008 ratelimit=off
_synapse_saved() { # port|ratelimit -> value or nothing
    [[ -r $SYN_OVERRIDE ]] || return 0
    local line
    IFS= read -r line <"$SYN_OVERRIDE" || true
    [[ $line == '# mailroom-synapse: '* ]] || return 0
    local kv
    for kv in ${line#'# mailroom-synapse: '}; do
        [[ $kv == "$1="* ]] && { printf '%s' "${kv#*=}"; return 0; }
    done
    return 0
}

# What the configured server uses (status, env, register).
_synapse_current_port() {
    local p
    p=$(_synapse_saved port)
    printf '%s' "${p:-${MAILROOM_SYNAPSE_PORT:-18008}}"
}
_synapse_current_mode() {
    local m
    m=$(_synapse_saved ratelimit)
    printf '%s' "${m:-${MAILROOM_SYNAPSE_RATELIMIT:-off}}"
}

_synapse_check_port() {
    [[ $1 =~ ^[0-9]+$ && $1 -ge 1 && $1 -le 65535 ]] || { _synapse_err "invalid port '$1' (MAILROOM_SYNAPSE_PORT)"; return 1; }
}

# ---------------------------------------------------------------------------
# install

synapse_install() {
    _synapse_paths || return 1
    local venv=$SYN_VENV have=
    [[ -r $SYN_MARKER ]] && have=$(<"$SYN_MARKER")
    if [[ $have == "$SYNAPSE_VERSION" && -x $SYN_PY ]] && _synapse_venv_ok; then
        _synapse_info "install: matrix-synapse $SYNAPSE_VERSION already in $venv"
        return 0
    fi

    mkdir -p "$(dirname "$venv")" || { _synapse_err "cannot create $(dirname "$venv")"; return 1; }
    # CI jobs sharing a machine may install at the same time: one installs,
    # the others wait and then find it done.
    if ! command -v flock >/dev/null; then
        _synapse_install_locked
        return
    fi
    local lockfd
    exec {lockfd}>"$venv.lock" || { _synapse_err "cannot open $venv.lock"; return 1; }
    if ! flock -w 900 "$lockfd"; then
        exec {lockfd}>&-
        _synapse_err "timed out waiting for another install to release $venv.lock"
        return 1
    fi
    local rc=0
    _synapse_install_locked || rc=$?
    exec {lockfd}>&-
    return $rc
}

# The venv must still run (a Python upgrade or removal breaks its symlink) and
# hold exactly the pinned version. ~50 ms, much cheaper than importing Synapse.
_synapse_venv_ok() {
    local v
    v=$("$SYN_PY" -c 'import importlib.metadata as m; print(m.version("matrix-synapse"))' 2>/dev/null) || return 1
    [[ $v == "$SYNAPSE_VERSION" ]]
}

_synapse_install_locked() {
    local venv=$SYN_VENV have=
    [[ -r $SYN_MARKER ]] && have=$(<"$SYN_MARKER")
    if [[ $have == "$SYNAPSE_VERSION" && -x $SYN_PY ]] && _synapse_venv_ok; then
        _synapse_info "install: matrix-synapse $SYNAPSE_VERSION already in $venv (installed by another job)"
        return 0
    fi
    local python=${MAILROOM_SYNAPSE_PYTHON:-python3}
    command -v "$python" >/dev/null || { _synapse_err "$python not found (set MAILROOM_SYNAPSE_PYTHON)"; return 1; }
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        { _synapse_err "matrix-synapse $SYNAPSE_VERSION needs Python >= 3.10; $python is $("$python" -V 2>&1) (set MAILROOM_SYNAPSE_PYTHON)"; return 1; }

    # A wrong version or an interrupted install (no marker): start from scratch,
    # but only delete a directory that is recognisably a virtualenv.
    if [[ -e $venv ]]; then
        if [[ -f $venv/pyvenv.cfg ]]; then
            _synapse_info "install: replacing ${have:+matrix-synapse $have in }$venv"
            rm -rf -- "$venv" || { _synapse_err "cannot remove $venv"; return 1; }
        else
            _synapse_err "$venv exists and is not a virtualenv; remove it or set MAILROOM_SYNAPSE_VENV"
            return 1
        fi
    fi

    local log=$venv.install.log t0=$EPOCHREALTIME
    _synapse_info "install: matrix-synapse $SYNAPSE_VERSION into $venv ($("$python" -V 2>&1))"
    if ! "$python" -m venv "$venv" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        _synapse_err "'$python -m venv' failed (Debian: apt-get install python3-venv); log $log"
        return 1
    fi
    if ! "$SYN_PY" -m pip install --disable-pip-version-check --no-input --quiet \
        "matrix-synapse==$SYNAPSE_VERSION" >>"$log" 2>&1; then
        tail -n 20 "$log" >&2
        _synapse_err "pip install matrix-synapse==$SYNAPSE_VERSION failed; log $log"
        return 1
    fi
    _synapse_venv_ok || { _synapse_err "matrix-synapse $SYNAPSE_VERSION not importable after install; log $log"; return 1; }
    printf '%s\n' "$SYNAPSE_VERSION" >"$SYN_MARKER" || return 1
    _synapse_info "install: matrix-synapse $SYNAPSE_VERSION installed in $(_synapse_ms_since "$t0") ms"
}

# ---------------------------------------------------------------------------
# process helpers

_synapse_alive() { # PID; a zombie counts as gone
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# The recorded pid, only if that process really is our Synapse (a pid file can
# outlive its process and the pid be reused): never signal anything else.
_synapse_pid() {
    [[ -r $SYN_PIDFILE ]] || return 0
    local pid argv
    pid=$(tr -dc '0-9' <"$SYN_PIDFILE" 2>/dev/null) || return 0
    [[ -n $pid ]] && _synapse_alive "$pid" || return 0
    argv=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 0
    [[ $argv == *" synapse.app.homeserver "* && $argv == *" -c $SYN_HS_CONF "* ]] && printf '%s' "$pid"
    return 0
}

# GET /_matrix/client/versions over /dev/tcp (no curl, no proxy settings
# involved); true on HTTP 200. A subshell, so a refused connection cannot
# abort a `set -e` caller.
_synapse_probe() { # PORT
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET /_matrix/client/versions HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$1" >&3
        IFS= read -r -t 3 -u 3 line || exit 1
        [[ $line =~ ^HTTP/1\.[01]\ 200 ]]
    ) 2>/dev/null
}

_synapse_port_taken() { ( exec 3<>"/dev/tcp/127.0.0.1/$1" ) 2>/dev/null; }

# synapse.log is appended to across starts: show only what this start wrote
# (SYN_LOG_OFFSET, its size before the start).
_synapse_show_log() {
    if [[ -s $SYN_START_LOG ]]; then
        printf -- '--- %s ---\n' "$SYN_START_LOG" >&2
        tail -n 25 "$SYN_START_LOG" >&2
    fi
    local size
    size=$(stat -c %s "$SYN_LOG" 2>/dev/null) || return 0
    if [[ $size -gt ${SYN_LOG_OFFSET:-0} ]]; then
        printf -- '--- last lines of %s ---\n' "$SYN_LOG" >&2
        tail -c +$((${SYN_LOG_OFFSET:-0} + 1)) "$SYN_LOG" | tail -n 25 >&2
    fi
    return 0
}

_synapse_stop() { # PID
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + SYNAPSE_STOP_TIMEOUT))
    while _synapse_alive "$pid"; do
        if [[ $SECONDS -ge $deadline ]]; then
            _synapse_warn "pid $pid still running after ${SYNAPSE_STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            local kdeadline=$((SECONDS + 5))
            while _synapse_alive "$pid" && [[ $SECONDS -lt $kdeadline ]]; do sleep 0.1; done
            break
        fi
        sleep 0.1
    done
    rm -f -- "$SYN_PIDFILE"
    if _synapse_alive "$pid"; then
        _synapse_err "pid $pid survived SIGKILL"
        return 1
    fi
    _synapse_info "stopped (pid $pid)"
}

# ---------------------------------------------------------------------------
# config

_synapse_ratelimits_off() {
    local l='{per_second: 1000, burst_count: 10000}'
    cat <<EOF
# MAILROOM_SYNAPSE_RATELIMIT=off: every rate limit raised so that tests never
# see 429. (Unknown rc_* keys are ignored by Synapse versions without them.)
rc_message: $l
rc_registration: $l
rc_registration_token_validity: $l
rc_login:
  address: $l
  account: $l
  failed_attempts: $l
rc_admin_redaction: $l
rc_joins:
  local: $l
  remote: $l
rc_joins_per_room: $l
rc_invites:
  per_room: $l
  per_user: $l
  per_issuer: $l
rc_third_party_invite: $l
rc_3pid_validation: $l
rc_key_requests: $l
rc_media_create: $l
rc_presence:
  per_user: $l
rc_delayed_event_mgmt: $l
rc_room_creation: $l
rc_reports: $l
rc_user_directory: $l
rc_profile: $l
rc_federation: {window_size: 1000, sleep_limit: 10000, sleep_delay: 500, reject_limit: 10000, concurrent: 1000}
federation_rr_transactions_per_room_per_second: 1000
EOF
}

_synapse_override() { # PORT MODE SECRET -> override YAML on stdout
    local port=$1 mode=$2 secret=$3
    cat <<EOF
# mailroom-synapse: port=$port ratelimit=$mode
# Generated by scripts/lib/synapse.sh (synapse_up): rewritten on every start.
# Loaded after homeserver.yaml; each top-level key here replaces that file's.
server_name: "$SYNAPSE_SERVER_NAME"
public_baseurl: "http://127.0.0.1:$port/"
listeners:
  - port: $port
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
daemonize: true
pid_file: "$SYN_PIDFILE"
log_config: "$SYN_LOG_CONF"
database:
  name: sqlite3
  args:
    database: "$SYN_DIR/homeserver.db"
media_store_path: "$SYN_DIR/media_store"
# Small on purpose: the tests post an attachment over it and check that the
# ticket still reaches the room, with a line saying what was not uploaded.
max_upload_size: $SYNAPSE_MAX_UPLOAD
registration_shared_secret: "$secret"
enable_registration: false
report_stats: false
enable_metrics: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
allow_public_rooms_over_federation: false
presence:
  enabled: false
url_preview_enabled: false
EOF
    if [[ $mode == off ]]; then _synapse_ratelimits_off; fi
}

_synapse_log_conf() {
    cat <<EOF
# Generated by scripts/lib/synapse.sh: WARNING and above to $SYN_LOG
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.handlers.WatchedFileHandler
    formatter: precise
    filename: "$SYN_LOG"
    encoding: utf8
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
EOF
}

_synapse_generate() {
    mkdir -p "$SYN_DIR" "$STATE/run" "$STATE/log" || { _synapse_err "cannot create $SYN_DIR"; return 1; }
    if [[ ! -s $SYN_SECRET ]]; then
        local secret
        secret=$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40) || true
        [[ ${#secret} -ge 32 ]] || { _synapse_err "could not generate a shared secret"; return 1; }
        (umask 022 && printf '%s\n' "$secret" >"$SYN_SECRET.tmp") && mv "$SYN_SECRET.tmp" "$SYN_SECRET" ||
            { _synapse_err "cannot write $SYN_SECRET"; return 1; }
    fi
    if [[ ! -s $SYN_HS_CONF ]]; then
        _synapse_info "generating $SYN_HS_CONF (server name $SYNAPSE_SERVER_NAME)"
        local log=$STATE/log/synapse-generate.log
        if ! (cd "$SYN_DIR" && "$SYN_PY" -m synapse.app.homeserver --generate-config \
                --server-name "$SYNAPSE_SERVER_NAME" --report-stats no \
                --config-path "$SYN_HS_CONF" --config-directory "$SYN_DIR" \
                --data-directory "$SYN_DIR") >"$log" 2>&1; then
            cat "$log" >&2
            rm -f -- "$SYN_HS_CONF"
            _synapse_err "generating the Synapse config failed"
            return 1
        fi
    fi
    _synapse_log_conf >"$SYN_LOG_CONF" || { _synapse_err "cannot write $SYN_LOG_CONF"; return 1; }
}

# ---------------------------------------------------------------------------
# up / down / status / env

synapse_up() {
    _synapse_paths || return 1
    if [[ ! -x $SYN_PY || ! -r $SYN_MARKER ]]; then
        _synapse_err "not installed in $SYN_VENV; run synapse_install (scripts/stack install)"
        return 1
    fi
    local mode=${MAILROOM_SYNAPSE_RATELIMIT:-off}
    [[ $mode == off || $mode == default ]] ||
        { _synapse_err "MAILROOM_SYNAPSE_RATELIMIT must be 'off' or 'default', not '$mode'"; return 1; }
    local port=${MAILROOM_SYNAPSE_PORT:-}
    [[ -n $port ]] || port=$(_synapse_saved port)
    port=${port:-18008}
    _synapse_check_port "$port" || return 1
    # Paths end up in YAML double quotes.
    [[ $STATE =~ ^[A-Za-z0-9._/+-]+$ ]] || { _synapse_err "state dir path may only contain A-Z a-z 0-9 . _ / + -: $STATE"; return 1; }

    _synapse_generate || return 1
    local secret new old=
    secret=$(tr -dc 'A-Za-z0-9' <"$SYN_SECRET")
    new=$(_synapse_override "$port" "$mode" "$secret") || return 1
    [[ -r $SYN_OVERRIDE ]] && old=$(<"$SYN_OVERRIDE")

    local pid
    pid=$(_synapse_pid)
    if [[ -n $pid ]]; then
        if [[ $new == "$old" ]] && _synapse_probe "$port"; then
            _synapse_info "already running on 127.0.0.1:$port (pid $pid, rate limits $mode)"
            return 0
        fi
        if [[ $new != "$old" ]]; then
            _synapse_info "configuration changed (now port $port, rate limits $mode); restarting"
        else
            _synapse_info "pid $pid does not answer on 127.0.0.1:$port; restarting"
        fi
        _synapse_stop "$pid" || return 1
    fi

    if _synapse_port_taken "$port"; then
        _synapse_err "port 127.0.0.1:$port is already in use by another process (see: ss -ltnp 'sport = :$port'); set MAILROOM_SYNAPSE_PORT"
        return 1
    fi
    printf '%s\n' "$new" >"$SYN_OVERRIDE.tmp" && chmod 644 "$SYN_OVERRIDE.tmp" && mv "$SYN_OVERRIDE.tmp" "$SYN_OVERRIDE" ||
        { _synapse_err "cannot write $SYN_OVERRIDE"; return 1; }
    rm -f -- "$SYN_PIDFILE"

    # Synapse prepares its database in the foreground (first start: schema
    # creation), then forks: the parent exits, the child writes the pid file,
    # points stdio at /dev/null and starts listening.
    SYN_LOG_OFFSET=$(stat -c %s "$SYN_LOG" 2>/dev/null) || SYN_LOG_OFFSET=0
    local t0=$EPOCHREALTIME
    if ! timeout "$SYNAPSE_READY_TIMEOUT" "$SYN_PY" -m synapse.app.homeserver \
            -c "$SYN_HS_CONF" -c "$SYN_OVERRIDE" </dev/null >"$SYN_START_LOG" 2>&1; then
        _synapse_show_log
        pid=$(_synapse_pid)
        [[ -n $pid ]] && _synapse_stop "$pid"
        _synapse_err "failed to start (config $SYN_HS_CONF + $SYN_OVERRIDE)"
        return 1
    fi

    local deadline=$((SECONDS + SYNAPSE_READY_TIMEOUT)) started=$SECONDS seen=no
    while ! _synapse_probe "$port"; do
        pid=$(_synapse_pid)
        if [[ -n $pid ]]; then
            seen=yes
        elif [[ $seen == yes || $((SECONDS - started)) -ge 5 ]]; then
            # The daemon writes its pid file right after forking: a process
            # that is gone, or never showed up within 5 s, died (usually a
            # config or port problem).
            _synapse_show_log
            _synapse_err "exited during startup"
            return 1
        fi
        if [[ $SECONDS -ge $deadline ]]; then
            _synapse_show_log
            [[ -n $pid ]] && _synapse_stop "$pid"
            _synapse_err "not ready after ${SYNAPSE_READY_TIMEOUT}s: GET http://127.0.0.1:$port/_matrix/client/versions did not return 200"
            return 1
        fi
        sleep 0.1
    done
    pid=$(_synapse_pid)
    _synapse_info "up on http://127.0.0.1:$port in $(_synapse_ms_since "$t0") ms (pid ${pid:-?}, rate limits $mode, matrix-synapse $(<"$SYN_MARKER"))"
}

synapse_down() {
    _synapse_paths || return 1
    local pid
    pid=$(_synapse_pid)
    if [[ -z $pid ]]; then
        # Stale (process gone, or the pid now belongs to someone else).
        rm -f -- "$SYN_PIDFILE"
        return 0
    fi
    _synapse_stop "$pid"
}

synapse_status() {
    _synapse_paths || return 1
    local port pid
    port=$(_synapse_current_port)
    pid=$(_synapse_pid)
    if [[ -n $pid ]] && _synapse_probe "$port"; then
        printf '%-8s %-5s %s\n' synapse up "127.0.0.1:$port (pid $pid, rate limits $(_synapse_current_mode))"
        return 0
    fi
    printf '%-8s %-5s %s\n' synapse DOWN "127.0.0.1:$port${pid:+ (pid $pid not answering)}"
    return 1
}

synapse_env() {
    _synapse_paths || return 1
    local port mode
    port=$(_synapse_current_port)
    mode=$(_synapse_current_mode)
    cat <<EOF
export MAILROOM_SYNAPSE_URL=http://127.0.0.1:$port
export MAILROOM_SYNAPSE_SERVER_NAME=$SYNAPSE_SERVER_NAME
export MAILROOM_SYNAPSE_SHARED_SECRET_FILE=$SYN_SECRET
export MAILROOM_SYNAPSE_RATELIMIT=$mode
EOF
}

# ---------------------------------------------------------------------------
# users

# USER is a localpart (a leading '@' and ':localhost' are stripped); prints the
# full user id on stdout. An existing user is fine when the password matches:
# known from synapse/registered when we set that password ourselves, otherwise
# checked with a login. (With MAILROOM_SYNAPSE_RATELIMIT=default Synapse allows
# only ~5 logins per address before 1 per 5.5 minutes; the record keeps repeated
# `up`s from spending them.)
synapse_register() {
    _synapse_paths || return 1
    if [[ $# -lt 2 || $# -gt 3 || ( $# -eq 3 && $3 != admin ) ]]; then
        _synapse_err "usage: synapse_register USER PASSWORD [admin]"
        return 1
    fi
    local user=${1#@} pw=$2 admin=${3:-notadmin}
    user=${user%":$SYNAPSE_SERVER_NAME"}
    [[ $user =~ ^[a-z0-9._=/+-]+$ ]] ||
        { _synapse_err "invalid user '$1': lower-case a-z 0-9 . _ = / + - only"; return 1; }
    [[ -n $pw && $pw != *$'\n'* ]] || { _synapse_err "invalid password for $user: empty or multi-line"; return 1; }
    [[ -r $SYN_SECRET ]] || { _synapse_err "$SYN_SECRET missing; run synapse_up"; return 1; }
    local port
    port=$(_synapse_current_port)
    _synapse_probe "$port" || { _synapse_err "not answering on 127.0.0.1:$port; run synapse_up"; return 1; }

    local py=python3 known=no digest
    [[ -x $SYN_PY ]] && py=$SYN_PY
    digest=$(printf '%s\0%s' "$user" "$pw" | sha256sum) || return 1
    digest=${digest%% *}
    if [[ -r $SYN_REGISTERED ]]; then
        local u d f
        while read -r u d f; do
            [[ $u == "$user" && $d == "$digest" && ( $admin == notadmin || $f == admin ) ]] && known=yes
        done <"$SYN_REGISTERED"
    fi
    local out rc=0
    out=$(SYN_URL=http://127.0.0.1:$port SYN_USER=$user SYN_PW=$pw SYN_ADMIN=$admin \
          SYN_KNOWN=$known SYN_SECRET_FILE=$SYN_SECRET SYN_SERVER_NAME=$SYNAPSE_SERVER_NAME \
          "$py" - <<'PY'
import hashlib, hmac, json, os, sys, time, urllib.error, urllib.request

url, user, pw = os.environ["SYN_URL"], os.environ["SYN_USER"], os.environ["SYN_PW"]
admin = os.environ["SYN_ADMIN"] == "admin"
known = os.environ["SYN_KNOWN"] == "yes"
uid = "@%s:%s" % (user, os.environ["SYN_SERVER_NAME"])
with open(os.environ["SYN_SECRET_FILE"]) as f:
    secret = f.read().strip()
# Loopback only: never route through an http_proxy from the environment.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

def call(method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"error": raw.decode(errors="replace")}

def fail(msg):
    print("stack: error: synapse: " + msg, file=sys.stderr)
    sys.exit(1)

def logout(token):
    call("POST", "/_matrix/client/v3/logout", {}, token)

st, body = call("GET", "/_synapse/admin/v1/register")
if st != 200 or "nonce" not in body:
    fail("register %s: GET nonce -> %s %s" % (user, st, body))
nonce = body["nonce"]
mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
mac.update(b"\0".join([nonce.encode(), user.encode(), pw.encode(),
                       b"admin" if admin else b"notadmin"]))
st, body = call("POST", "/_synapse/admin/v1/register", {
    "nonce": nonce, "username": user, "password": pw, "admin": admin,
    "mac": mac.hexdigest()})
if st == 200:
    # The response logs the new user in; drop that device again.
    if body.get("access_token"):
        logout(body["access_token"])
    print("created")
    sys.exit(0)
if body.get("errcode") != "M_USER_IN_USE":
    fail("register %s -> %s %s" % (user, st, body))
if known:
    print("exists")
    sys.exit(0)

# Exists: the password must work (and the account be an admin if asked for).
for attempt in range(4):
    st, body = call("POST", "/_matrix/client/v3/login", {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": pw,
        "initial_device_display_name": "mailroom synapse_register check"})
    if st != 429:
        break
    wait_ms = body.get("retry_after_ms", 0)
    if wait_ms > 10000 or attempt == 3:
        fail("%s exists, but checking its password hit the login rate limit "
             "(retry after %.0f s; MAILROOM_SYNAPSE_RATELIMIT=default allows few logins)"
             % (uid, wait_ms / 1000))
    time.sleep(wait_ms / 1000 + 0.05)
if st == 403:
    fail("%s already exists with a different password" % uid)
if st != 200:
    fail("login %s -> %s %s" % (uid, st, body))
token = body["access_token"]
if admin:
    st, _ = call("GET", "/_synapse/admin/v2/users/" + urllib.request.quote(uid), token=token)
    if st != 200:
        logout(token)
        fail("%s already exists but is not a server admin (admin API -> %s)" % (uid, st))
logout(token)
print("verified")
PY
) || rc=$?
    [[ $rc -eq 0 ]] || return 1
    if [[ $known == no ]]; then
        # Remember the password we know works; keep one line per user.
        { [[ -r $SYN_REGISTERED ]] && awk -v u="$user" '$1 != u' "$SYN_REGISTERED"
          printf '%s %s %s\n' "$user" "$digest" "$admin"; } >"$SYN_REGISTERED.tmp" 2>/dev/null &&
            chmod 600 "$SYN_REGISTERED.tmp" && mv "$SYN_REGISTERED.tmp" "$SYN_REGISTERED" ||
            _synapse_warn "could not update $SYN_REGISTERED"
    fi
    case $out in
        created)  _synapse_info "user @$user:$SYNAPSE_SERVER_NAME created${3:+ (admin)}" ;;
        exists)   _synapse_info "user @$user:$SYNAPSE_SERVER_NAME already exists" ;;
        verified) _synapse_info "user @$user:$SYNAPSE_SERVER_NAME already exists (password checked)" ;;
    esac
    printf '@%s:%s\n' "$user" "$SYNAPSE_SERVER_NAME"
}
