#!/bin/sh
# devcluster's stand-in for the entrypoint of the official mariadb/mysql
# images, running the host's MariaDB (Debian package) instead, or for
# mysql:8* images (DEVCLUSTER_IMAGE, set by the agent) Oracle's MySQL 8.0.31
# mysqld from the tool cache (scripts/mysql8.sh installs it; DEVCLUSTER_MYSQLD
# overrides the path).
#
#   docker-entrypoint.sh mariadbd|mysqld [--defaults-extra-file=F] [options...]
#
# On an empty datadir it initializes it (mariadb-install-db, or
# mysqld --initialize-insecure), starts a temporary server without
# networking, sets the root password (MARIADB_ROOT_PASSWORD or
# MYSQL_ROOT_PASSWORD) for root@localhost and root@'%', creates
# MARIADB_DATABASE / MARIADB_USER if given, runs /docker-entrypoint-initdb.d,
# and stops it. Then it execs the server as root, bound to the pod IP.
set -eu

server=mariadbd
image="${DEVCLUSTER_IMAGE:-}"
image="${image%%@*}"
image="${image##*/}"
case "$image" in
mysql:8*)
	server="${DEVCLUSTER_MYSQLD:-${ORDINAL_CACHE:-$HOME/.cache/ordinal}/mysql-8.0.31/bin/mysqld}"
	if [ ! -x "$server" ]; then
		echo "devcluster-entrypoint: $image needs $server: run scripts/mysql8.sh" >&2
		exit 1
	fi
	;;
esac
mysql8() { [ "$server" != mariadbd ]; }

if [ "$#" -eq 0 ]; then set -- mariadbd; fi
case "$1" in -*) set -- mariadbd "$@" ;; esac
case "$1" in
mariadbd | mysqld) shift ;;
*) exec "$@" ;;
esac

log() { echo "devcluster-entrypoint: $*" >&2; }

# --defaults-file / --defaults-extra-file must stay the first option.
defaults=""
case "${1:-}" in --defaults-file=* | --defaults-extra-file=*) defaults="$1" ;; esac

setting() { # name -> value as the server would use it with our options
	"$server" "$@" --user=root --verbose --help 2>/dev/null |
		awk -v k="$SETTING" '$1 == k { print $2; exit }'
}
datadir=$(SETTING=datadir setting "$@")
datadir=${datadir:-/var/lib/mysql}

# Pods share the host's network: always listen on the pod's own IP (given last,
# it wins over any bind-address in the option files).
extra="--user=root"
if [ -n "${DEVCLUSTER_POD_IP:-}" ]; then extra="$extra --bind-address=$DEVCLUSTER_POD_IP"; fi
# MySQL's X plugin would listen on *:33060 for every pod of the host network.
# Its basedir (plugins, messages) is the tool cache folder, not /usr.
if mysql8; then extra="$extra --mysqlx=OFF --basedir=${server%/bin/mysqld}"; fi

mkdir -p /run/mysqld
# Client tools would send a password from the environment before one is set.
unset MYSQL_PWD
if [ ! -d "$datadir/mysql" ]; then
	log "initializing $datadir"
	sock=/run/mysqld/devcluster-init.sock
	if mysql8; then
		# --initialize wants an empty (or no) datadir.
		mkdir -p "$datadir"
		# shellcheck disable=SC2086 # $defaults is one word or empty
		"$server" $defaults --user=root --datadir="$datadir" --initialize-insecure \
			--mysqlx=OFF --basedir="${server%/bin/mysqld}" --log-error-verbosity=1
		# The rendered configuration boots read-only: not this private server.
		# shellcheck disable=SC2086
		"$server" $defaults --user=root --datadir="$datadir" --skip-networking \
			--socket="$sock" --skip-log-bin --skip-replica-start --mysqlx=OFF \
			--basedir="${server%/bin/mysqld}" --super-read-only=OFF --read-only=OFF &
	else
		mkdir -p "$datadir"
		# shellcheck disable=SC2086 # $defaults is one word or empty
		mariadb-install-db $defaults --user=root --datadir="$datadir" \
			--auth-root-authentication-method=normal --skip-test-db >/dev/null
		# shellcheck disable=SC2086
		mariadbd $defaults --user=root --datadir="$datadir" --skip-networking \
			--socket="$sock" --skip-log-bin --skip-slave-start &
	fi
	pid=$!
	i=0
	until mariadb-admin --skip-ssl --socket="$sock" -uroot ping >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -gt 120 ] || ! kill -0 "$pid" 2>/dev/null; then
			log "temporary server did not start"
			exit 1
		fi
		sleep 0.5
	done
	sql_escape() { printf '%s' "$1" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/'/\\\\'/g"; }
	pw="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
	{
		echo "SET @@SESSION.SQL_LOG_BIN=0;"
		# Like the official image: only root@localhost and root@'%' remain
		# (install-db also makes password-less root@127.0.0.1, ::1, hostname).
		if ! mysql8; then
			echo "DELETE FROM mysql.global_priv WHERE user = '' OR (user = 'root' AND host <> 'localhost');"
			echo "FLUSH PRIVILEGES;"
		fi
		if [ -n "$pw" ]; then
			p=$(sql_escape "$pw")
			echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$p';"
			echo "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$p';"
		else
			echo "CREATE USER IF NOT EXISTS 'root'@'%';"
		fi
		echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
		db="${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}"
		if [ -n "$db" ]; then echo "CREATE DATABASE IF NOT EXISTS \`$db\`;"; fi
		user="${MARIADB_USER:-${MYSQL_USER:-}}"
		upw="${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}"
		if [ -n "$user" ]; then
			echo "CREATE USER IF NOT EXISTS '$(sql_escape "$user")'@'%' IDENTIFIED BY '$(sql_escape "$upw")';"
			if [ -n "$db" ]; then echo "GRANT ALL ON \`$db\`.* TO '$(sql_escape "$user")'@'%';"; fi
		fi
		echo "FLUSH PRIVILEGES;"
	} | mariadb --skip-ssl --socket="$sock" -uroot
	for f in /docker-entrypoint-initdb.d/*; do
		[ -e "$f" ] || continue
		log "running $f"
		case "$f" in
		*.sh) . "$f" ;;
		*.sql) mariadb --skip-ssl --socket="$sock" -uroot ${pw:+-p"$pw"} <"$f" ;;
		*.sql.gz) gunzip -c "$f" | mariadb --skip-ssl --socket="$sock" -uroot ${pw:+-p"$pw"} ;;
		esac
	done
	# SHUTDOWN as a statement: MySQL 8 no longer takes the COM_SHUTDOWN command.
	mariadb --skip-ssl --socket="$sock" -uroot ${pw:+-p"$pw"} -e SHUTDOWN
	wait "$pid" || true
	log "initialized"
fi

# shellcheck disable=SC2086 # $extra is several words
exec "$server" "$@" $extra
