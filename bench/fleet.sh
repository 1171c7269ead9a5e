#!/usr/bin/env bash
# The central store's bench (issue 11), in one run on a private local
# PostgreSQL server: publish throughput (goal >= 200k hits/s), beside the
# server's own bulk load of the same rows (psql's \copy), and
# whole-process `xffidx query --db` latency for one address (~50 rows)
# and for its /24 with >= 10 M rows in xffidx_hits (goals <= 20 ms and
# <= 50 ms), with the plans the server ran for both (auto_explain), and the
# local `xffidx query` of the same address on the same index beside them.
#
#   bench/fleet.sh                       # 1 GiB capture, >= 10 M rows, 21 runs per query
#   SIZE=256M ROWS=2000000 bench/fleet.sh   # a quick, smaller run
#   KEEP=1 bench/fleet.sh                # keep $OUT (capture, index, server data)
#
# The table is filled past ROWS by copying the published sensor's rows
# (xffidx_files and xffidx_hits) under other sensor names s1, s2 ... with
# INSERT ... SELECT, without decoding the capture again for each. capgen
# puts every IPv4 X-Forwarded-For address in three /24s, so a /24 of the
# copies would hold a fifth of the table; the copies' IPv4 addresses are
# therefore spread: a.b.c.d at offset off becomes 10.i.d.(a%16*16+off%16)
# in copy i, so that a /24 holds a few thousand rows and one address a
# few dozen, as on a fleet of sensors seeing different clients. The
# dense capgen /24 (only in s0) is timed too, for scale.
#
# Needs: go, PostgreSQL server binaries (initdb, postgres, psql,
# pg_isready; /usr/lib/postgresql/*/bin). As root the server runs as the
# postgres user (as fleet/pgtest does). Disk: about 2.5 GB per 10 M rows
# plus the capture, in $OUT (default a new directory under /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-1G}
ROWS=${ROWS:-10000000}
RUNS=${RUNS:-21}
WANT_ROWS=${WANT_ROWS:-50} # rows of the one address looked for
OUT=${OUT:-$(mktemp -d /tmp/xffidx-fleet.XXXXXX)}
mkdir -p "$OUT"

bin=""
if command -v initdb >/dev/null; then
	bin=$(dirname "$(readlink -f "$(command -v initdb)")")
else
	bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
fi
[ -x "$bin/postgres" ] || { echo "fleet.sh: no PostgreSQL server binaries (initdb, postgres)" >&2; exit 2; }

server=""
cleanup() {
	# The postmaster itself: runuser does not pass SIGINT on.
	kill -INT "$(head -1 "$pgdir/data/postmaster.pid" 2>/dev/null)" 2>/dev/null || true
	if [ -n "$server" ]; then wait "$server" 2>/dev/null || true; fi
	if [ -z "${KEEP:-}" ]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT
# Run the server as an unprivileged user when root, as fleet/pgtest does.
as_server=()
pgdir="$OUT/pg"
mkdir -p "$pgdir"
if [ "$(id -u)" = 0 ]; then
	chmod 755 "$OUT" # mktemp -d makes it 0700: the server must reach its data
	chown postgres: "$pgdir"
	as_server=(runuser -u postgres --)
fi
"${as_server[@]}" "$bin/initdb" -D "$pgdir/data" -U xffidx --auth=trust -E UTF8 --locale=C --no-sync >"$OUT/initdb.log"
"${as_server[@]}" "$bin/postgres" -D "$pgdir/data" -k "$pgdir" -c listen_addresses= \
	-c fsync=off -c synchronous_commit=off -c full_page_writes=off \
	-c shared_buffers=512MB -c max_wal_size=8GB >"$OUT/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
	"$bin/pg_isready" -q -h "$pgdir" && break
	sleep 0.1
done
DB="postgres://xffidx@/postgres?host=$pgdir&sslmode=disable"
sql() { "$bin/psql" -X -q -At -v ON_ERROR_STOP=1 "$DB" "$@"; }

go build -o "$OUT/xffidx" ./cmd/xffidx
go build -o "$OUT/capgen" ./cmd/capgen
X="$OUT/xffidx"
IX="$OUT/index"

echo "== capture and index ($SIZE, capgen -xff-rate 0.9)"
"$OUT/capgen" -seed 11 -size "$SIZE" -xff-rate 0.9 -o "$OUT/cap.pcap" 2>&1
"$X" --index "$IX" build "$OUT/cap.pcap" 2>&1 | sed 's/; connections.*//'

# now_ns: a monotonic-enough wall clock in nanoseconds.
now_ns() { date +%s%N; }

echo
echo "== publish (sensor s0, into an empty store)"
t0=$(now_ns)
"$X" --index "$IX" publish --db "$DB" --sensor s0 2>&1
t1=$(now_ns)
published=$(sql -c "SELECT count(*) FROM xffidx_hits")
pub_ms=$(((t1 - t0) / 1000000))
pub_rate=$((published * 1000 / (pub_ms > 0 ? pub_ms : 1)))
echo "publish: $published rows in $pub_ms ms: $pub_rate hits/s (goal >= 200000: $(awk -v r="$pub_rate" 'BEGIN{printf "%.2f", r/200000}') of it)"

# The reference: the server's own bulk load of the same rows (psql's
# \copy of them, out to a file and into an empty table with the same
# indexes), what no client can beat.
sql -c "\copy xffidx_hits to '$OUT/hits.copy' (format binary)"
sql -c "CREATE TABLE xffidx_hits_ref (LIKE xffidx_hits INCLUDING ALL)"
t0=$(now_ns)
sql -c "\copy xffidx_hits_ref from '$OUT/hits.copy' (format binary)"
t1=$(now_ns)
sql -c "DROP TABLE xffidx_hits_ref"
rm -f "$OUT/hits.copy"
ref_ms=$(((t1 - t0) / 1000000))
ref_rate=$((published * 1000 / (ref_ms > 0 ? ref_ms : 1)))
echo "reference: psql \copy of the same rows into an empty indexed table: $ref_ms ms: $ref_rate rows/s; publish runs at $(awk -v p="$pub_rate" -v r="$ref_rate" 'BEGIN{printf "%.2f", p/r}') of it"

copies=$(((ROWS + published - 1) / published - 1))
echo
echo "== fill: $copies copies of s0's rows under sensors s1..s$copies (INSERT ... SELECT)"
t0=$(now_ns)
sql <<-EOF
	INSERT INTO xffidx_files SELECT 's' || i, fid, path, size, fingerprint, gen, pending, stale_from, published_to, provisional_from, hits
		FROM xffidx_files, generate_series(1, $copies) i WHERE sensor = 's0';
	INSERT INTO xffidx_hits (addr, sensor, fid, off, header, gen, pos, ts_sec, ts_nsec, ts_digits, src_ip, src_port, dst_ip, dst_port, proto, xff, method, host, path)
		SELECT CASE WHEN get_byte(addr, 0) = 4
			THEN set_byte(set_byte(set_byte(set_byte(addr, 1, 10), 2, i), 3, get_byte(addr, 4)), 4, (get_byte(addr, 1) % 16) * 16 + (off % 16)::int)
			ELSE addr END, 's' || i, fid, off, header, gen, pos, ts_sec, ts_nsec, ts_digits, src_ip, src_port, dst_ip, dst_port, proto, xff, method, host, path
		FROM xffidx_hits, generate_series(1, $copies) i WHERE sensor = 's0';
	VACUUM ANALYZE xffidx_hits;
	VACUUM ANALYZE xffidx_files;
EOF
t1=$(now_ns)
total=$(sql -c "SELECT count(*) FROM xffidx_hits")
echo "xffidx_hits: $total rows ($(sql -c "SELECT pg_size_pretty(pg_total_relation_size('xffidx_hits'))") with indexes), filled in $(((t1 - t0) / 1000000)) ms"

# The address: the X-Forwarded-For address (header 0, query's default)
# of copy s1 whose rows are closest to WANT_ROWS.
ADDR=$(sql -c "SELECT get_byte(addr, 1) || '.' || get_byte(addr, 2) || '.' || get_byte(addr, 3) || '.' || get_byte(addr, 4)
	FROM xffidx_hits WHERE sensor = 's1' AND header = 0 AND get_byte(addr, 0) = 4
	GROUP BY addr ORDER BY abs(count(*) - $WANT_ROWS), addr LIMIT 1")
DENSE=$(sql -c "SELECT get_byte(addr, 1) || '.' || get_byte(addr, 2) || '.' || get_byte(addr, 3) || '.0/24'
	FROM xffidx_hits WHERE sensor = 's0' AND get_byte(addr, 0) = 4 LIMIT 1")
NET=$(echo "$ADDR" | awk -F. '{print $1"."$2"."$3".0/24"}')

# bench LABEL ARGS...: median and min wall time of RUNS runs of one
# whole process (output to /dev/null; the row count from one more run).
declare -A median
bench() {
	local label=$1
	shift
	local rows
	rows=$("$@" 2>/dev/null | wc -l || true)
	local ts=()
	for _ in $(seq "$RUNS"); do
		local a b
		a=$(now_ns)
		"$@" >/dev/null 2>&1 || true
		b=$(now_ns)
		ts+=($(((b - a) / 1000)))
	done
	local sorted
	sorted=$(printf '%s\n' "${ts[@]}" | sort -n)
	local med min
	med=$(echo "$sorted" | sed -n "$(((${#ts[@]} + 1) / 2))p")
	min=$(echo "$sorted" | head -1)
	median[$label]=$med
	printf '%-44s %8d rows  median %8.1f ms  min %8.1f ms  (%d runs)\n' "$label" "$rows" \
		"$(awk -v v="$med" 'BEGIN{print v/1000}')" "$(awk -v v="$min" 'BEGIN{print v/1000}')" "${#ts[@]}"
}

echo
echo "== whole-process query latency, $total rows in the table, $((copies + 1)) sensors; local: the index s0 was published from"
bench "process start (xffidx --help)" "$X" --help
bench "query --db --ip" "$X" query --db "$DB" --ip "$ADDR"
bench "query --db --cidr /24" "$X" query --db "$DB" --cidr "$NET"
LOCAL=$(sql -c "SELECT get_byte(addr, 1) || '.' || get_byte(addr, 2) || '.' || get_byte(addr, 3) || '.' || get_byte(addr, 4)
	FROM xffidx_hits WHERE sensor = 's0' AND header = 0 AND get_byte(addr, 0) = 4
	GROUP BY addr ORDER BY abs(count(*) - $WANT_ROWS), addr LIMIT 1")
bench "query --db --ip $LOCAL" "$X" query --db "$DB" --ip "$LOCAL" --sensor s0
bench "local query --ip $LOCAL" "$X" --index "$IX" query --ip "$LOCAL"
RUNS=3 bench "query --db --cidr $DENSE" "$X" query --db "$DB" --cidr "$DENSE"
RUNS=3 bench "local query --cidr $DENSE" "$X" --index "$IX" query --cidr "$DENSE"
echo "query --db --ip: $(awk -v v="${median[query --db --ip]}" 'BEGIN{printf "%.2f", v/1000/20}') of the 20 ms goal; --cidr /24: $(awk -v v="${median[query --db --cidr /24]}" 'BEGIN{printf "%.2f", v/1000/50}') of the 50 ms goal"
echo "the same less process start: --ip $(awk -v v="${median[query --db --ip]}" -v p="${median[process start (xffidx --help)]}" 'BEGIN{printf "%.1f ms, %.2f", (v-p)/1000, (v-p)/1000/20}') of the goal; --cidr /24 $(awk -v v="${median[query --db --cidr /24]}" -v p="${median[process start (xffidx --help)]}" 'BEGIN{printf "%.1f ms, %.2f", (v-p)/1000, (v-p)/1000/50}') of the goal"

# The plans of the statements query --db sends, as it sends them: the
# server's auto_explain logs each statement's plan with its timings, for
# one more run of each query.
sql -c "LOAD 'auto_explain'" -c "ALTER SYSTEM SET session_preload_libraries = 'auto_explain'" -c "ALTER SYSTEM SET auto_explain.log_min_duration = 0" \
	-c "ALTER SYSTEM SET auto_explain.log_analyze = on" -c "ALTER SYSTEM SET auto_explain.log_buffers = on" -c "SELECT pg_reload_conf()" >/dev/null
explain() {
	echo
	echo "== plan of query --db $*"
	local before
	before=$(wc -l <"$OUT/server.log")
	"$X" query --db "$DB" "$@" >/dev/null
	tail -n +"$((before + 1))" "$OUT/server.log" | sed -n '/ plan:$/,$p' | sed 's/^[0-9-]* [0-9:.]* UTC \[[0-9]*\] //'
}
explain --ip "$ADDR"
explain --cidr "$NET"
sql -c "LOAD 'auto_explain'" -c "ALTER SYSTEM RESET session_preload_libraries" -c "ALTER SYSTEM RESET auto_explain.log_min_duration" -c "SELECT pg_reload_conf()" >/dev/null
