#!/usr/bin/env bash
# Query time and peak memory against the number of hits of one address:
# `query` (NDJSON), `query --flows`, `query --write` and `top`, over a
# capgen capture in which 198.51.100.7 is the client of about HITS
# requests (a quarter of the XFF requests at -xff-rate 0.3; about 6.7 KB
# of capture per hit).
#
#   bench/scale-query.sh                      # 100k and 1M hits
#   HITS="100000" bench/scale-query.sh
#   OLD=/path/to/older/xffidx bench/scale-query.sh   # the same commands, alternated, with an older build
#   KEEP=1 bench/scale-query.sh               # keep the captures and indexes (in $OUT) for the next run
#
# Needs: go, GNU time (/usr/bin/time). Captures go to $OUT (default
# /tmp/xffidx-scale-query; 1M hits is a 6.4 GB capture), removed at the
# end unless KEEP is set.
set -euo pipefail
cd "$(dirname "$0")/.."

HITS=${HITS:-"100000 1000000"}
OUT=${OUT:-/tmp/xffidx-scale-query}
ADDR=198.51.100.7
mkdir -p "$OUT"
go build -o "$OUT/xffidx" ./cmd/xffidx
go build -o "$OUT/capgen" ./cmd/capgen
X="$OUT/xffidx"

# measure LABEL BINARY INDEX ARGS...: run one command, print its wall time
# and peak RSS (its output goes to $OUT/stdout).
measure() {
	local label=$1 bin=$2 ix=$3
	shift 3
	rm -f "$OUT/w.pcap"
	/usr/bin/time -f "%e %M" -o "$OUT/time" "$bin" --index "$ix" "$@" >"$OUT/stdout" 2>"$OUT/stderr" || {
		local rc=$?
		# 1 is "nothing found", not a failure; anything else is.
		[ "$rc" = 1 ] || { echo "$label: $bin $* failed (exit $rc):" >&2; cat "$OUT/stderr" >&2; exit 1; }
	}
	local secs kb
	read -r secs kb <"$OUT/time"
	printf "  %-10s %-16s %8.2f s %8.0f MiB\n" "$label" "$(basename "$bin")" "$secs" "$(awk -v k="$kb" 'BEGIN { print k / 1024 }')"
	echo "$label $(basename "$bin") $n $secs $kb" >>"$OUT/results"
}

: >"$OUT/results"
for n in $HITS; do
	cap="$OUT/hits-$n.pcap"
	ix="$OUT/index-$n"
	size=$((n * 6700))
	if [ ! -f "$cap" ]; then
		"$OUT/capgen" -seed 7 -size "$size" -xff-rate 0.3 -o "$cap" 2>/dev/null
		rm -rf "$ix"
	fi
	# Incremental: nothing to do for an index of this capture made by this
	# build, an upgrade for one an older xffidx made.
	"$X" --index "$ix" build --quiet "$cap"
	hits=$("$X" --index "$ix" query --ip "$ADDR" --format json | wc -l)
	flows=$("$X" --index "$ix" query --ip "$ADDR" --flows --format json | wc -l)
	echo "$n hits asked: $hits hits of $ADDR in $flows flows, capture $(stat -c %s "$cap") bytes"
	bins=("$X")
	[ -n "${OLD:-}" ] && bins+=("$OLD")
	for b in "${bins[@]}"; do measure query "$b" "$ix" query --ip "$ADDR" --format json; done
	for b in "${bins[@]}"; do measure --flows "$b" "$ix" query --ip "$ADDR" --flows --format json; done
	for b in "${bins[@]}"; do measure --write "$b" "$ix" query --ip "$ADDR" --write "$OUT/w.pcap"; done
	for b in "${bins[@]}"; do measure top "$b" "$ix" top --n 20 --format json; done
	rm -f "$OUT/w.pcap"
	if [ -z "${KEEP:-}" ]; then rm -rf "$cap" "$ix"; fi
done

# Memory and time at the largest size against the smallest, per command: a
# memory ratio near 1 means it does not follow the hits.
awk -v first="${HITS%% *}" -v last="${HITS##* }" '
	$3 == first { t0[$1 " " $2] = $4; m0[$1 " " $2] = $5 }
	$3 == last { t1[$1 " " $2] = $4; m1[$1 " " $2] = $5 }
	END {
		if (first == last) exit
		printf "%s vs %s hits:\n", last, first
		for (k in t1) if (k in t0) printf "  %-26s time x%.1f, peak RSS x%.2f (%.0f vs %.0f MiB)\n", k, t1[k] / t0[k], m1[k] / m0[k], m1[k] / 1024, m0[k] / 1024
	}' "$OUT/results"
