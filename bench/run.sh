#!/usr/bin/env bash
# Benchmarks xffidx side by side with references, alternating the commands in
# one run so that machine noise hits all of them alike. See README
# "Performance" for what it measures and the last results.
#
#   bench/run.sh                 # 4 GiB capture, 5 runs of each command
#   SIZE=1G RUNS=3 bench/run.sh
#   OLD=/path/to/older/xffidx bench/run.sh   # also time an older build
#   QUICK=1 bench/run.sh         # skip the tshark query and cold-cache runs
#   bench/latency.sh             # the query latency part alone (see there)
#
# Needs: go, ripgrep (rg), GNU time (/usr/bin/time), python3; tshark for the
# one tshark query; root for the cold-cache runs (skipped otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-4G}
RUNS=${RUNS:-5}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
go build -o "$OUT/xffidx" ./cmd/xffidx
go build -o "$OUT/capgen" ./cmd/capgen
X="$OUT/xffidx"
IX="$OUT/index"

# The capture: bulk proxy->backend traffic, mostly binary response bodies,
# ~2 % of packets carrying XFF, one address in ~25 % of them; 8 % of the
# requests carry a 1-12 KB cookie, so their header blocks span several
# segments and their XFF line (last) is in a later one.
CAP="$OUT/bench-$SIZE-cookies.pcap"
[ -f "$CAP" ] || "$OUT/capgen" -seed 42 -size "$SIZE" -cookie-rate 0.08 -cookie-max 12K -o "$CAP" -truth "$CAP.truth.json"
CAP1="$OUT/bench-1G-cookies.pcap"
[ -f "$CAP1" ] || "$OUT/capgen" -seed 43 -size 1G -cookie-rate 0.08 -cookie-max 12K -o "$CAP1"
BYTES=$(stat -c %s "$CAP")

now() { date +%s%N; }
# secs CMD...: run CMD, print its wall time in seconds.
secs() {
	local t0 t1
	t0=$(now)
	"$@" >/dev/null 2>&1
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", (b - a) / 1e9 }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mbps() { awk -v b="$BYTES" -v s="$1" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
build() { rm -rf "$IX"; "$X" --index "$IX" build "$@"; }

echo "capture: $CAP ($BYTES bytes), $RUNS runs each, $(nproc) cores"
cat "$CAP" >/dev/null # page-cache it

# The reference does the same search: the five header names the build
# looks for, in any case (but not the parsing, nor the index).
NAMES='x-forwarded-for:|forwarded:|x-real-ip:|true-client-ip:|cf-connecting-ip:'
buildold() { rm -rf "$IX"; "$OLD" --index "$IX" build "$@"; }
: >"$OUT/build2" >"$OUT/build1" >"$OUT/rg" >"$OUT/rg1" >"$OUT/cat" >"$OUT/buildold"
for i in $(seq "$RUNS"); do
	secs build "$CAP" >>"$OUT/build2"
	secs rg -a -c -i "$NAMES" "$CAP" >>"$OUT/rg"
	secs rg -a -c -i 'x-forwarded-for:' "$CAP" >>"$OUT/rg1"
	secs cat "$CAP" >>"$OUT/cat"
	secs build --workers 1 "$CAP" >>"$OUT/build1"
	if [ -n "${OLD:-}" ]; then secs buildold "$CAP" >>"$OUT/buildold"; fi
done
B2=$(median <"$OUT/build2")
B1=$(median <"$OUT/build1")
RG=$(median <"$OUT/rg")
RG1=$(median <"$OUT/rg1")
CT=$(median <"$OUT/cat")
OLDLINE=""
if [ -n "${OLD:-}" ]; then
	BO=$(median <"$OUT/buildold")
	OLDLINE="| older xffidx build ($OLD), all workers | $BO s, $(mbps "$BO") MB/s; this build $(ratio "$B2" "$BO") x its throughput |"
fi

# Recall and precision against the generator's truth: every (record,
# address) of X-Forwarded-For, this build and the older one.
recall() {
	rm -rf "$IX"; "$1" --index "$IX" build "$CAP" >/dev/null 2>&1
	"$1" --index "$IX" query --cidr 0.0.0.0/0 --cidr ::/0 --format json >"$OUT/all.json" 2>/dev/null || true
	python3 - "$CAP.truth.json" "$OUT/all.json" <<'PY'
import json, sys
truth = set()
for h in json.load(open(sys.argv[1]))["Hits"]:
    for a in h["Addrs"]:
        truth.add((h["Offset"], a))
found = set()
for line in open(sys.argv[2]):
    r = json.loads(line)
    found.add((r["offset"], r["xff_ip"]))
both = len(truth & found)
print("%.4f %.4f %d %d" % (both / max(1, len(truth)), both / max(1, len(found)), len(truth), len(found)))
PY
}
read -r RECALL PRECISION NTRUTH NFOUND < <(recall "$X")
CONT=$("$X" --index "$IX" stats | awk -F'\t' '$1 == "lines in a later segment than their request line" { c = $2 } $1 == "xff lines" { x = $2 } $1 == "other forwarding header lines" { o = $2 } END { printf "%d of %d forwarding header lines (%.1f %%)", c, x + o, 100 * c / (x + o) }')
RECALLLINE="| recall / precision against the generator's truth ($NTRUTH XFF (record, address) pairs) | $RECALL / $PRECISION; in a later segment than their request line: $CONT |"
if [ -n "${OLD:-}" ]; then
	read -r ORECALL OPRECISION _ _ < <(recall "$OLD")
	RECALLLINE="$RECALLLINE
| older xffidx: recall / precision | $ORECALL / $OPRECISION |"
fi

# Peak RSS of the build, 1 GiB vs the big capture.
rss() { rm -rf "$IX"; /usr/bin/time -f %M -o "$OUT/rss" "$X" --index "$IX" build "$1" >/dev/null 2>&1; cat "$OUT/rss"; }
RSS1=$(rss "$CAP1")
RSSB=$(rss "$CAP")

# Index size after compaction, per address entry.
"$X" --index "$IX" compact
STATS=$("$X" --index "$IX" stats)
IXBYTES=$(awk -F'\t' '$1 == "index bytes" { print $2 }' <<<"$STATS")
PERENTRY=$(awk -F'\t' '$1 == "index bytes per entry" { print $2 }' <<<"$STATS")

# Query latency, whole process including opening the index, for an address
# with about 50 hits and the most frequent one (>= 10,000 hits).
read -r FEW FEWN MANY MANYN < <(python3 - "$CAP.truth.json" <<'EOF'
import json, sys, collections
t = json.load(open(sys.argv[1]))
c = collections.Counter()
for h in t["Hits"]:
    for a in set(h["Addrs"]):
        c[a] += 1
few = min(c, key=lambda a: (abs(c[a] - 50), a))
many = max(c, key=lambda a: c[a])
print(few, c[few], many, c[many])
EOF
)
: >"$OUT/qfew" >"$OUT/qmany"
for i in $(seq $((RUNS * 2))); do
	secs "$X" --index "$IX" query --ip "$FEW" --format json >>"$OUT/qfew"
	secs "$X" --index "$IX" query --ip "$MANY" --format json >>"$OUT/qmany"
done
QF=$(median <"$OUT/qfew")
QM=$(median <"$OUT/qmany")
GOTF=$("$X" --index "$IX" query --ip "$FEW" --format json | wc -l)
GOTM=$("$X" --index "$IX" query --ip "$MANY" --format json | wc -l)
TS="(tshark not installed)"
if [ -n "${QUICK:-}" ]; then
	TS="(QUICK: skipped)"
elif command -v tshark >/dev/null; then
	TS=$(secs tshark -r "$CAP" -Y "http.x_forwarded_for contains \"$FEW\"")
fi

# Cold cache: every run starts with the page cache dropped.
COLD="(not root: skipped)"
if [ -n "${QUICK:-}" ]; then
	COLD="(QUICK: skipped)"
elif [ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/drop_caches ]; then
	: >"$OUT/coldcat" >"$OUT/coldbuild"
	for i in $(seq "$RUNS"); do
		sync; echo 3 >/proc/sys/vm/drop_caches
		secs cat "$CAP" >>"$OUT/coldcat"
		sync; echo 3 >/proc/sys/vm/drop_caches
		secs build "$CAP" >>"$OUT/coldbuild"
	done
	CC=$(median <"$OUT/coldcat")
	CB=$(median <"$OUT/coldbuild")
	COLD="build $CB s ($(mbps "$CB") MB/s) vs cat $CC s ($(mbps "$CC") MB/s): $(ratio "$CB" "$CC") x cat"
fi

cat <<EOF | tee "$OUT/results.md"
| measure (median of $RUNS, $(nproc) cores, page-cached $SIZE capture) | result |
|---|---|
| xffidx build, all workers | $B2 s, $(mbps "$B2") MB/s |
| rg -a -c -i '$NAMES' | $RG s, $(mbps "$RG") MB/s |
| rg -a -c -i 'x-forwarded-for:' | $RG1 s, $(mbps "$RG1") MB/s |
| cat FILE >/dev/null | $CT s, $(mbps "$CT") MB/s |
| build / rg (five names) throughput | $(ratio "$B2" "$RG") x |
| build / rg (x-forwarded-for: alone) throughput | $(ratio "$B2" "$RG1") x |
| build / cat throughput | $(ratio "$B2" "$CT") x |
| build, 1 worker | $B1 s, $(mbps "$B1") MB/s |
| scaling, all workers / 1 | $(ratio "$B2" "$B1") x |
| peak RSS, 1 GiB / $SIZE capture | $RSS1 KiB / $RSSB KiB |
| query, $FEW ($GOTF hits; truth $FEWN) | $(awk -v s="$QF" 'BEGIN { printf "%.1f", s * 1000 }') ms |
| query, $MANY ($GOTM hits; truth $MANYN) | $(awk -v s="$QM" 'BEGIN { printf "%.1f", s * 1000 }') ms |
| tshark -Y 'http.x_forwarded_for contains "$FEW"', once | $TS s |
| index on disk after compaction | $IXBYTES bytes, $PERENTRY bytes per address entry |
| cold cache | $COLD |
$RECALLLINE
$OLDLINE
EOF

# Whole-process query latency for ~50 and ~3,000 hits and a 10,000-address
# list, beside rg -c on the same capture, and where the time goes (before
# and after with OLD): bench/latency.sh, on this capture and index.
SIZE="$SIZE" OUT="$OUT" RUNS=$((RUNS * 2 + 1)) bench/latency.sh
