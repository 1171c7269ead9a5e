#!/usr/bin/env bash
# Times `xffidx build` on a sparse capture, a pcap file header followed by
# 1 GiB of zeros (what a preallocated or sparse capture file looks like:
# to libpcap and tshark, records that captured nothing), against `cat` of
# the same file, and prints MB/s and the ratio. Also one that is 1024
# records of 256 KiB of zeros each (valid records, nothing to decode).
#
#   bench/scale-zeros.sh             # 1 GiB, 3 runs of each
#   SIZE=4G RUNS=5 bench/scale-zeros.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-1G}
RUNS=${RUNS:-3}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
go build -o "$OUT/xffidx" ./cmd/xffidx
X="$OUT/xffidx"
IX="$OUT/index-zeros"

# A little-endian µs pcap header: snap length 262144, Ethernet.
header() { printf '\xd4\xc3\xb2\xa1\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x00\x01\x00\x00\x00'; }
ZEROS="$OUT/zeros-$SIZE.pcap"
header >"$ZEROS"
truncate -s "+$SIZE" "$ZEROS"
BYTES=$(stat -c %s "$ZEROS")

# Records of 256 KiB of zeros: only their 16-byte headers are written, the
# data stays sparse.
RECS="$OUT/zero-records-$SIZE.pcap"
header >"$RECS"
n=$(((BYTES - 24) / (16 + 262144)))
python3 - "$RECS" "$n" <<'PY'
import struct, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    for i in range(n):
        f.seek(24 + i * (16 + 262144))
        f.write(struct.pack("<IIII", 1700000000 + i, 0, 262144, 262144))
    f.truncate(24 + n * (16 + 262144))
PY

now() { date +%s%N; }
secs() {
	local t0 t1
	t0=$(now)
	"$@" >/dev/null 2>&1
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", (b - a) / 1e9 }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
build() { rm -rf "$IX"; "$X" --index "$IX" build "$1"; }

echo "sparse captures of $BYTES bytes, $RUNS runs each (alternating), $(nproc) cores"
for f in "$ZEROS" "$RECS"; do
	b=$(stat -c %s "$f")
	: >"$OUT/t.build"
	: >"$OUT/t.cat"
	for _ in $(seq "$RUNS"); do
		secs build "$f" >>"$OUT/t.build"
		secs cat "$f" >>"$OUT/t.cat"
	done
	tb=$(median <"$OUT/t.build")
	tc=$(median <"$OUT/t.cat")
	awk -v n="$(basename "$f")" -v b="$b" -v tb="$tb" -v tc="$tc" 'BEGIN {
		printf "%-28s build %7.3f s %7.0f MB/s   cat %7.3f s %7.0f MB/s   build/cat %.2f\n", n, tb, b / 1e6 / tb, tc, b / 1e6 / tc, tc / tb
	}'
done
rm -rf "$IX" "$OUT/t.build" "$OUT/t.cat" "$ZEROS" "$RECS"
