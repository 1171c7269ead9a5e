#!/usr/bin/env bash
# How index costs scale (issue 10 items 13, 15, 18), each printed as a ratio
# of two sizes measured in one run:
#   - prune of N vs 4N deleted captures, in one index of 4N captures (the
#     cost should follow the files removed: ratio ~4), and a query run
#     during the 4N prune (it should succeed, not wait out the lock);
#   - build peak RSS at 2.5M and 20M address entries, under ulimit -n 64
#     (the bounded merge: RSS should stay flat, under 256 MiB);
#   - a one-address query with 1k vs 200k captures in the catalog, and the
#     whole-catalog read every query did before (go test -bench).
#
#   bench/scale-index.sh
#   PRUNE_N=200 ENTRIES="250000 2000000" bench/scale-index.sh   # quicker
#
# The 20M-entry capture is ~25 GB: it goes to $TMP (default /tmp) and is
# deleted after its build. Needs: go, GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."

PRUNE_N=${PRUNE_N:-500}
ENTRIES=${ENTRIES:-"2500000 20000000"}
TMP=$(mktemp -d "${TMP:-/tmp}/scale-index.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
go build -o "$TMP/xffidx" ./cmd/xffidx
go build -o "$TMP/capgen" ./cmd/capgen
X="$TMP/xffidx"

now() { date +%s%N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
entries() { "$X" --index "$1" stats | awk -F'\t' '$1 == "address entries" { print $2 }'; }

echo "== prune: N=$PRUNE_N vs 4N=$((4 * PRUNE_N)) deleted captures of $((4 * PRUNE_N))"
D="$TMP/prune"
mkdir -p "$D"
"$TMP/capgen" -seed 7 -size 128K -xff-rate 1 -o "$TMP/one.pcap" 2>/dev/null
for i in $(seq -w 1 $((4 * PRUNE_N))); do cp "$TMP/one.pcap" "$D/c$i.pcap"; done
"$X" --index "$TMP/ix-prune" build "$D" 2>/dev/null
cp -r "$TMP/ix-prune" "$TMP/ix-n"
cp -r "$TMP/ix-prune" "$TMP/ix-4n"
# An address of the captures, to query during the prune (awk reads all:
# no SIGPIPE under pipefail).
"$TMP/capgen" -seed 7 -size 128K -xff-rate 1 -truth "$TMP/one.json" -o /dev/null 2>/dev/null
probe=$(awk 'match($0, /[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/) && !p { p = substr($0, RSTART, RLENGTH) } END { print p }' "$TMP/one.json")
find "$D" -name '*.pcap' | sort | awk -v n="$PRUNE_N" 'NR <= n' | xargs rm -f
t0=$(now); "$X" --index "$TMP/ix-n" prune 2>/dev/null; t1=$(now)
prune_n=$(((t1 - t0) / 1000000))
rm -f "$D"/*.pcap
t0=$(now)
"$X" --index "$TMP/ix-4n" prune 2>/dev/null &
pid=$!
sleep 0.2
q0=$(now); qrc=0; "$X" --index "$TMP/ix-4n" query --ip "${probe:-10.0.0.1}" >/dev/null 2>&1 || qrc=$?; q1=$(now)
wait "$pid"; t1=$(now)
prune_4n=$(((t1 - t0) / 1000000))
echo "prune N: ${prune_n} ms; prune 4N: ${prune_4n} ms; ratio 4N/N $(ratio "$prune_4n" "$prune_n") (linear: 4)"
echo "query during the 4N prune: exit $qrc (0 or 1: answered) in $(((q1 - q0) / 1000000)) ms"

echo "== build peak RSS (ulimit -n 64)"
# Address entries per MiB of capgen -xff-rate 1, from a sample.
"$TMP/capgen" -seed 11 -size 32M -xff-rate 1 -o "$TMP/sample.pcap" 2>/dev/null
"$X" --index "$TMP/ix-sample" build "$TMP/sample.pcap" 2>/dev/null
per_mib=$(( $(entries "$TMP/ix-sample") / 32 ))
rm -rf "$TMP/sample.pcap" "$TMP/ix-sample"
first_rss="" first_n=""
for want in $ENTRIES; do
	mib=$(( want / per_mib + 1 ))
	cap="$TMP/build-$want.pcap"
	"$TMP/capgen" -seed 12 -size "${mib}M" -xff-rate 1 -o "$cap" 2>/dev/null
	t0=$(now)
	rss=$( (ulimit -n 64; /usr/bin/time -f '%M' "$X" --index "$TMP/ix-$want" build "$cap" 2>&1 >/dev/null | tail -1) )
	t1=$(now)
	n=$(entries "$TMP/ix-$want")
	echo "$n entries (${mib} MiB capture): build peak RSS $((rss / 1024)) MiB in $(((t1 - t0) / 1000000)) ms"
	rm -rf "$cap" "$TMP/ix-$want"
	if [ -z "$first_rss" ]; then first_rss=$rss first_n=$n; else
		echo "entries ratio $(ratio "$n" "$first_n"), RSS ratio $(ratio "$rss" "$first_rss")"
	fi
done

echo "== one-address query vs catalog size"
out=$(go test ./query/ -run '^$' -bench 'BenchmarkQueryCatalog$' -benchtime 20x)
ns() { echo "$out" | awk -v n="$1" '$1 ~ n { print $3 }'; }
q1k=$(ns 'files=1000/query') q200k=$(ns 'files=200000/query') c200k=$(ns 'files=200000/whole-catalog')
echo "query, 1k captures: $((q1k / 1000)) us; 200k captures: $((q200k / 1000)) us; ratio $(ratio "$q200k" "$q1k") (flat: 1)"
echo "whole catalog at 200k (every query before): $((c200k / 1000000)) ms; $(ratio "$c200k" "$q200k") x the query now"
