#!/usr/bin/env bash
# A throw-away PostgreSQL for the tests: `scripts/postgres.sh start DIR` initdb's a cluster in DIR/data
# (Debian's PostgreSQL; installed with apt-get when absent), listens on 127.0.0.1 on a free port only
# (its socket in DIR, not /var/run), trust auth, creates database "dreams" and prints its URL
# (postgresql+psycopg://…), also written to DIR/url. `scripts/postgres.sh stop DIR` stops it.
set -euo pipefail
cmd=${1:?usage: postgres.sh start|stop DIR}; dir=${2:?usage: postgres.sh start|stop DIR}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ "$cmd" = stop ]; then
  [ -n "$bindir" ] && [ -f "$dir/data/postmaster.pid" ] || exit 0
  as=$(stat -c %U "$dir/data")
  if [ "$(id -un)" = "$as" ]; then "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  else runuser -u "$as" -- "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null; fi
  exit 0
fi
[ "$cmd" = start ] || { echo "usage: postgres.sh start|stop DIR" >&2; exit 2; }
if [ -z "$bindir" ]; then
  [ "$(id -u)" = 0 ] || { echo "postgres.sh: no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
run=()  # initdb refuses root: run the server as the postgres system user, owning DIR
if [ "$(id -u)" = 0 ]; then id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres; run=(runuser -u postgres --); chown postgres "$dir"; fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -rf "$dir/data"
"${run[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
"${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }
"${run[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres dreams
url="postgresql+psycopg://postgres@127.0.0.1:$port/dreams"
echo "$url" >"$dir/url"
echo "$url"
