#!/usr/bin/env bash
# Whole-process query latency on the bench index, as a person or a script
# meets it: `xffidx query --ip` for an address with about 50 hits and one
# with about 3,000, and one `query --ip-file` of 10,000 addresses (half
# indexed, half absent), each beside ripgrep counting the same address(es)
# in the same capture (`rg -c`: the cost of answering without an index), and
# the breakdown of where the time goes (process start and package
# initialisation, index open, catalog, look-up, reads, decode, output), for
# this build and, with OLD=/path/to/older/xffidx, an older one (which has
# neither --timings nor --ip-file: its whole-process times, its package
# initialisation, and the list as a loop of one process per address, timed
# over the list's first LOOP lines and scaled to 10,000).
#
#   bench/latency.sh                      # after bench/run.sh made the capture
#   SIZE=1G RUNS=11 bench/latency.sh
#   OLD=/path/to/older/xffidx bench/latency.sh
#
# The machine's load average is printed with the figures: on a shared
# machine they are upper bounds.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-4G}
RUNS=${RUNS:-11}
LOOP=${LOOP:-300}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
go build -o "$OUT/xffidx" ./cmd/xffidx
go build -o "$OUT/capgen" ./cmd/capgen
X="$OUT/xffidx"
IX="$OUT/index"
CAP="$OUT/bench-$SIZE-cookies.pcap"
[ -f "$CAP" ] || "$OUT/capgen" -seed 42 -size "$SIZE" -cookie-rate 0.08 -cookie-max 12K -o "$CAP" -truth "$CAP.truth.json"
# The index of that capture alone (bench/run.sh leaves it compacted).
if ! "$X" --index "$IX" files --format json 2>/dev/null | grep -q "\"path\":\"$(realpath "$CAP")\""; then
	rm -rf "$IX"
	"$X" --index "$IX" build "$CAP" >/dev/null 2>&1
fi
cat "$CAP" >/dev/null # page-cache it

# The addresses: the one with the number of hits nearest 50 and 3,000 in the
# generator's truth, and a list of 5,000 indexed and 5,000 absent addresses
# (and its patterns for rg, without the comment line).
read -r FEW FEWN MID MIDN < <(python3 - "$CAP.truth.json" "$OUT/list10k.txt" "$OUT/list10k.rg" <<'EOF'
import json, sys, collections, random
t = json.load(open(sys.argv[1]))
c = collections.Counter()
for h in t["Hits"]:
    for a in set(h["Addrs"]):
        c[a] += 1
few = min(c, key=lambda a: (abs(c[a] - 50), a))
mid = min(c, key=lambda a: (abs(c[a] - 3000), a))
rng = random.Random(7)
present = rng.sample(sorted(c), min(5000, len(c)))
absent = set()
while len(absent) < 10000 - len(present):
    a = "100.%d.%d.%d" % (rng.randrange(64, 128), rng.randrange(256), rng.randrange(256))
    if a not in c:
        absent.add(a)
lst = present + sorted(absent)
rng.shuffle(lst)
open(sys.argv[2], "w").write("# %d indexed and %d absent addresses\n" % (len(present), len(absent)) + "\n".join(lst) + "\n")
open(sys.argv[3], "w").write("\n".join(lst) + "\n")
print(few, c[few], mid, c[mid])
EOF
)

# timeit N CMD...: median wall milliseconds of N runs (output discarded).
cat >"$OUT/timeit.py" <<'EOF'
import subprocess, sys, time
n, cmd = int(sys.argv[1]), sys.argv[2:]
ts = []
for _ in range(n):
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ts.append((time.perf_counter() - t0) * 1000)
ts.sort()
print("%.1f" % ts[len(ts) // 2])
EOF
timeit() { python3 "$OUT/timeit.py" "$@"; }
# initms BIN: median over RUNS of the package initialisation (sum of
# GODEBUG=inittrace's clock times) of `BIN --help`.
initms() {
	for _ in $(seq "$RUNS"); do
		GODEBUG=inittrace=1 "$1" --help 2>&1 >/dev/null | awk '/^init / { s += $5 } END { printf "%.2f\n", s }'
	done | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
# breakdown ARGS...: medians over RUNS runs of this build's --timings
# fields and of the whole process's wall time less main (process start,
# package initialisation, exit), each run measured whole:
# "rest main open catalog lookup reads decode output records".
cat >"$OUT/breakdown.py" <<'EOF'
import subprocess, sys, time, statistics
n, cmd = int(sys.argv[1]), sys.argv[2:]
rows = []
for _ in range(n):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = (time.perf_counter() - t0) * 1000
    line = [l for l in p.stderr.splitlines() if "timings (ms)" in l][0]
    r = dict(f.split("=") for f in line.split(": ", 2)[2].split())
    r["rest"] = wall - float(r["main"])
    rows.append(r)
keys = ["rest", "main", "open", "catalog", "lookup", "reads", "decode", "output", "records"]
print(" ".join("%.1f" % statistics.median(float(r[k]) for r in rows) for k in keys))
EOF
breakdown() { python3 "$OUT/breakdown.py" "$RUNS" "$X" --index "$IX" --timings query "$@" --format json; }
hits() { "$X" --index "$IX" query "$@" --format json 2>/dev/null | wc -l; }

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
INIT=$(initms "$X")
TFEW=$(timeit "$RUNS" "$X" --index "$IX" query --ip "$FEW" --format json)
TMID=$(timeit "$RUNS" "$X" --index "$IX" query --ip "$MID" --format json)
TLIST=$(timeit 3 "$X" --index "$IX" query --ip-file "$OUT/list10k.txt" --format json)
RGFEW=$(timeit 3 rg -a -c -F "$FEW" "$CAP")
RGMID=$(timeit 3 rg -a -c -F "$MID" "$CAP")
RGLIST=$(timeit 3 rg -a -c -F -f "$OUT/list10k.rg" "$CAP")
read -r BF_REST BF_MAIN BF_OPEN BF_CAT BF_LOOK BF_READ BF_DEC BF_OUT BF_REC < <(breakdown --ip "$FEW")
read -r BM_REST BM_MAIN BM_OPEN BM_CAT BM_LOOK BM_READ BM_DEC BM_OUT BM_REC < <(breakdown --ip "$MID")
read -r BL_REST BL_MAIN BL_OPEN BL_CAT BL_LOOK BL_READ BL_DEC BL_OUT BL_REC < <(RUNS=3 breakdown --ip-file "$OUT/list10k.txt")
NFEW=$(hits --ip "$FEW")
NMID=$(hits --ip "$MID")
NLIST=$(hits --ip-file "$OUT/list10k.txt")

OLDROWS=""
if [ -n "${OLD:-}" ] && ! "$OLD" --index "$IX" query --ip "$FEW" --format json >/dev/null 2>"$OUT/olderr"; then
	# An older build refuses an index of a newer schema: timing its error
	# would look like a fast answer.
	OLDROWS="| older build ($OLD) | cannot read this index: $(head -c 200 "$OUT/olderr" | tr -d '|\n') |"
elif [ -n "${OLD:-}" ]; then
	OINIT=$(initms "$OLD")
	OFEW=$(timeit "$RUNS" "$OLD" --index "$IX" query --ip "$FEW" --format json)
	OMID=$(timeit "$RUNS" "$OLD" --index "$IX" query --ip "$MID" --format json)
	awk -v n="$LOOP" '!/^#/ && c++ < n' "$OUT/list10k.txt" >"$OUT/listloop.txt"
	t0=$(date +%s%N)
	while read -r a; do "$OLD" --index "$IX" query --ip "$a" --format json >/dev/null 2>&1 || true; done <"$OUT/listloop.txt"
	t1=$(date +%s%N)
	OLOOP=$(awk -v a="$t0" -v b="$t1" -v n="$LOOP" 'BEGIN { printf "%.0f", (b - a) / 1e6 / n * 10000 }')
	OLDROWS="| older build ($OLD): whole process, ~50 / ~3,000 hits | $OFEW ms / $OMID ms; package initialisation $OINIT ms |
| older build: 10,000 addresses as one process each (first $LOOP timed, scaled) | $OLOOP ms |"
fi
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

cat <<EOF | tee "$OUT/latency.md"
| whole-process latency, $(nproc) cores, page-cached $SIZE capture, load average $LOAD0 before and $LOAD1 after | this build | rg -a -c -F on the capture |
|---|---|---|
| query --ip $FEW ($NFEW rows), median of $RUNS | $TFEW ms | $RGFEW ms |
| query --ip $MID ($NMID rows), median of $RUNS | $TMID ms | $RGMID ms |
| query --ip-file of 10,000 addresses (5,000 indexed; $NLIST rows), median of 3 | $TLIST ms | $RGLIST ms (rg -f) |
$OLDROWS

| where the time goes (ms, medians; --timings) | ~50 hits | ~3,000 hits | 10,000 addresses |
|---|---|---|---|
| process start, package initialisation and exit (whole process less main; of which package initialisation $INIT ms) | $BF_REST | $BM_REST | $BL_REST |
| main | $BF_MAIN | $BM_MAIN | $BL_MAIN |
| index open and close | $BF_OPEN | $BM_OPEN | $BL_OPEN |
| catalog entries | $BF_CAT | $BM_CAT | $BL_CAT |
| look-up (hit keys, request records, sort) | $BF_LOOK | $BM_LOOK | $BL_LOOK |
| packet reads ($BF_REC / $BM_REC / $BL_REC records) | $BF_READ | $BM_READ | $BL_READ |
| decode and rows | $BF_DEC | $BM_DEC | $BL_DEC |
| output (NDJSON) | $BF_OUT | $BM_OUT | $BL_OUT |
EOF
