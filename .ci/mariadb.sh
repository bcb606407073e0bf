#!/usr/bin/env bash
# Install (if needed) and start a MariaDB server for the test suite, without systemd.
#
# Usage (as root, on Debian):   export $(bash .ci/mariadb.sh | tail -1)
#
# The LAST line of stdout is  MYSQL_URL=mysql+pymysql://llm_cache:llm_cache@127.0.0.1:PORT/llm_cache_test
# Everything else goes to stderr, so the caller's `| tail -1` sees only that line.
#
# Idempotent: running it again reuses the server it started before (same datadir, same port),
# and works when mariadb-server is already installed, or when Debian's own MariaDB is running
# on 3306 (we then take the next free port: we never touch the system server).
#
# Environment knobs (all optional):
#   MARIADB_PORT     first port to try (default 3306)
#   MARIADB_BASEDIR  where the datadir, socket, pid and log live (default /var/lib/llm-cache-mariadb)
set -euo pipefail

log() { echo "mariadb.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts mariadbd as the mysql user)"

BASE="${MARIADB_BASEDIR:-/var/lib/llm-cache-mariadb}"
DATADIR="$BASE/data"
RUNDIR="$BASE/run"
SOCKET="$RUNDIR/mysqld.sock"
PIDFILE="$RUNDIR/mysqld.pid"
PORTFILE="$BASE/port"
ERRLOG="$BASE/mariadbd.err"
DB=llm_cache_test
DBUSER=llm_cache
DBPASS=llm_cache

# ---- 1. install ------------------------------------------------------------------------------
if ! command -v mariadbd >/dev/null 2>&1 && ! [ -x /usr/sbin/mariadbd ]; then
    log "installing mariadb-server with apt-get (takes ~1 min)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # In a container the postinst may try to start the service through invoke-rc.d and fail or
    # start Debian's own server; either is fine, we run our own instance below.
    apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends mariadb-server mariadb-client >&2
else
    log "mariadb-server already installed"
fi
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
INSTALL_DB=$(command -v mariadb-install-db || command -v mysql_install_db)
ADMIN=$(command -v mariadb-admin || command -v mysqladmin)
CLIENT=$(command -v mariadb || command -v mysql)

mkdir -p "$BASE" "$RUNDIR"
chown mysql:mysql "$RUNDIR"

ping_ours() { "$ADMIN" --no-defaults --socket="$SOCKET" -uroot ping >/dev/null 2>&1; }

# A TCP port is free when nothing accepts a connection on it (bash's /dev/tcp: no extra tools).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- 2. start (unless our instance is already up) ----------------------------------------------
if ping_ours && [ -s "$PORTFILE" ]; then
    PORT=$(cat "$PORTFILE")
    log "our MariaDB is already running on port $PORT"
else
    if [ ! -d "$DATADIR/mysql" ]; then
        log "initialising datadir $DATADIR"
        mkdir -p "$DATADIR"
        chown mysql:mysql "$DATADIR"
        # root authenticates by unix socket (as OS root): no password to manage.
        "$INSTALL_DB" --no-defaults --user=mysql --datadir="$DATADIR" \
            --auth-root-authentication-method=socket --skip-test-db >&2
    fi
    PORT="${MARIADB_PORT:-3306}"
    if [ -s "$PORTFILE" ]; then PORT=$(cat "$PORTFILE"); fi  # keep the port of a previous run
    while ! port_free "$PORT"; do
        log "port $PORT is busy (another server?), trying $((PORT + 1))"
        PORT=$((PORT + 1))
        [ "$PORT" -lt 3400 ] || die "no free port in 3306..3399"
    done
    log "starting mariadbd on 127.0.0.1:$PORT (datadir $DATADIR, log $ERRLOG)"
    # --no-defaults: ignore /etc/mysql/*.cnf, so a Debian default config cannot move our
    # socket/datadir. setsid + all fds redirected: the daemon must not keep the caller's stdout
    # pipe open, or `bash .ci/mariadb.sh | tail -1` would never finish.
    setsid "$MARIADBD" --no-defaults --user=mysql \
        --datadir="$DATADIR" --socket="$SOCKET" --pid-file="$PIDFILE" \
        --bind-address=127.0.0.1 --port="$PORT" --log-error="$ERRLOG" \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
        --innodb-flush-log-at-trx-commit=2 --skip-name-resolve \
        </dev/null >/dev/null 2>&1 &
    echo "$PORT" > "$PORTFILE"
    for _ in $(seq 1 120); do
        ping_ours && break
        sleep 0.5
    done
    ping_ours || { tail -n 30 "$ERRLOG" >&2 || true; die "mariadbd did not answer within 60 s"; }
    log "mariadbd is up"
fi

# ---- 3. database and user (idempotent statements) ----------------------------------------------
# The user exists for both 127.0.0.1 (TCP, what MYSQL_URL uses) and localhost (socket clients).
# It also gets rights on llm_cache_test_* so parallel test workers may create their own DBs.
"$CLIENT" --no-defaults --socket="$SOCKET" -uroot >&2 <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$DBUSER'@'127.0.0.1' IDENTIFIED BY '$DBPASS';
CREATE USER IF NOT EXISTS '$DBUSER'@'localhost' IDENTIFIED BY '$DBPASS';
GRANT ALL PRIVILEGES ON \`$DB\`.* TO '$DBUSER'@'127.0.0.1', '$DBUSER'@'localhost';
GRANT ALL PRIVILEGES ON \`llm\_cache\_test\_%\`.* TO '$DBUSER'@'127.0.0.1', '$DBUSER'@'localhost';
FLUSH PRIVILEGES;
SQL

# Prove the URL works over TCP with the test user before printing it.
"$CLIENT" --no-defaults --protocol=TCP -h 127.0.0.1 -P "$PORT" -u"$DBUSER" -p"$DBPASS" "$DB" \
    -e 'SELECT 1' >/dev/null || die "cannot log in as $DBUSER over TCP on port $PORT"
log "ready: $("$CLIENT" --no-defaults --socket="$SOCKET" -uroot -N -e 'SELECT VERSION()')"

echo "MYSQL_URL=mysql+pymysql://$DBUSER:$DBPASS@127.0.0.1:$PORT/$DB"
