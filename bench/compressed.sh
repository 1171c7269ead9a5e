#!/usr/bin/env bash
# Compressed captures, each measure beside its reference in one run (the
# commands alternate, so that machine noise hits them alike):
#   - build of one .gz (one deflate stream) vs `gzip -dc FILE >/dev/null`
#   - build of two .gz files at once vs one
#   - build of a multi-frame .zst (frames of 64 MiB, and of 1 MiB as for
#     seeking) vs `zstd -dc FILE >/dev/null`
#   - whole-process `query --ip` of an address with ~50 hits on the .gz and
#     on each .zst vs on the uncompressed capture, with the bytes each
#     decompressed (-v)
#   - peak RSS of each, the index overhead of the restart points, and the
#     load average (the machine may be shared)
#
#   bench/compressed.sh                  # 4 GiB capture, 3 runs of each
#   SIZE=256M RUNS=1 bench/compressed.sh # quick
#
# Needs: go, gzip, zstd, GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-4G}
RUNS=${RUNS:-3}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
go build -o "$OUT/xffidx" ./cmd/xffidx
go build -o "$OUT/capgen" ./cmd/capgen
X="$OUT/xffidx"
IX="$OUT/index-compressed"

# The capture of bench/run.sh: bulk proxy traffic, ~2 % of packets with XFF.
CAP="$OUT/bench-$SIZE-cookies.pcap"
[ -f "$CAP" ] || "$OUT/capgen" -seed 42 -size "$SIZE" -cookie-rate 0.08 -cookie-max 12K -o "$CAP" -truth "$CAP.truth.json"
GZ="$OUT/gz/bench-$SIZE.pcap.gz"
GZ2="$OUT/gz2/bench-$SIZE-copy.pcap.gz"
ZST="$OUT/zst/bench-$SIZE.pcap.zst"
ZST1="$OUT/zst1m/bench-$SIZE-1m.pcap.zst"
mkdir -p "$OUT/gz" "$OUT/gz2" "$OUT/zst" "$OUT/zst1m"
# One deflate stream, as `tcpdump -z gzip` and logrotate write (level 1 to
# make it quicker: decoding costs about the same at every level).
[ -f "$GZ" ] || gzip -1 -c "$CAP" >"$GZ"
[ -f "$GZ2" ] || ln "$GZ" "$GZ2" # another path to the same bytes
# Frames of 64 MiB, as a post-rotate hook compressing in pieces (or the
# seekable format) writes them.
if [ ! -f "$ZST.done" ]; then
	rm -f "$ZST"
	BYTES=$(stat -c %s "$CAP")
	for ((off = 0; off < BYTES; off += 64 << 20)); do
		dd if="$CAP" bs=4M iflag=skip_bytes,count_bytes skip=$off count=$((64 << 20)) status=none | zstd -q -c >>"$ZST"
	done
	touch "$ZST.done"
fi
# Frames of 1 MiB, as a capture meant for seeking is compressed (the
# seekable format's frames are that small): a query decodes at most one.
if [ ! -f "$ZST1.done" ]; then
	split -b 1M --filter='zstd -q -c' "$CAP" >"$ZST1"
	touch "$ZST1.done"
fi
RAW=$(stat -c %s "$CAP")

now() { date +%s%N; }
# timed NAME CMD...: run CMD, append "seconds peak-KiB" to $OUT/t.NAME.
timed() {
	local name=$1
	shift
	local t0 t1
	t0=$(now)
	/usr/bin/time -f %M -o "$OUT/rss.$$" "$@" >/dev/null 2>"$OUT/err.$$" || true
	t1=$(now)
	awk -v a="$t0" -v b="$t1" -v m="$(tail -1 "$OUT/rss.$$")" 'BEGIN { printf "%.3f %d\n", (b - a) / 1e9, m }' >>"$OUT/t.$name"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med() { awk '{ print $1 }' "$OUT/t.$1" | median; }
rss() { awk '{ print $2 }' "$OUT/t.$1" | sort -g | tail -1 | awk '{ printf "%.0f", $1 / 1024 }'; }
mbps() { awk -v b="$RAW" -v s="$1" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
build() { rm -rf "$IX"; "$X" --index "$IX" build --quiet "$@"; }
# timedbuild NAME FILE...: a build into a new index, timed.
timedbuild() {
	local name=$1
	shift
	rm -rf "$IX"
	timed "$name" "$X" --index "$IX" build --quiet "$@"
}

echo "capture: $CAP ($RAW bytes); gzip -1 $(stat -c %s "$GZ") bytes; zstd frames $(stat -c %s "$ZST") bytes; $RUNS runs each, $(nproc) cores"
cat "$CAP" "$GZ" "$GZ2" "$ZST" >/dev/null # page-cache them
rm -f "$OUT"/t.*
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$RUNS"); do
	timed gzipdc gzip -dc "$GZ"
	timedbuild buildgz "$GZ"
	timedbuild buildgz2 "$GZ" "$GZ2"
	timed zstddc zstd -dc "$ZST"
	timedbuild buildzst "$ZST"
	timed zstd1dc zstd -dc "$ZST1"
	timedbuild buildzst1 "$ZST1"
done

# The index of the .gz, the .zst and the uncompressed capture, for the
# queries.
build "$GZ" "$ZST" "$ZST1" "$CAP"
POINTS=$(rm -rf "$IX.p" && "$X" --index "$IX.p" -v build "$GZ" 2>&1 | sed -n 's/.*restart_point_bytes=\([0-9]*\).*/\1/p')
rm -rf "$IX.p"
# The address with the fewest hits from 40 up (about 50).
TOP=$("$X" --index "$IX" top --n 5000 --format csv --file "$(basename "$CAP")")
ADDR=$(awk -F, 'NR > 1 && $2 >= 40 { print $2, $1 }' <<<"$TOP" | sort -n | awk 'NR == 1 { print $2 }')
ADDR=${ADDR:-$(awk -F, 'NR == 2 { print $1 }' <<<"$TOP")}
for i in $(seq "$RUNS"); do
	timed querygz "$X" --index "$IX" query --ip "$ADDR" --file "$(basename "$GZ")" --format json
	timed queryraw "$X" --index "$IX" query --ip "$ADDR" --file "$(basename "$CAP")" --format json
	timed queryzst "$X" --index "$IX" query --ip "$ADDR" --file "$(basename "$ZST")" --format json
	timed queryzst1 "$X" --index "$IX" query --ip "$ADDR" --file "$(basename "$ZST1")" --format json
done
HITS=$("$X" --index "$IX" query --ip "$ADDR" --file "$(basename "$GZ")" --format json | wc -l)
ZHITS=$("$X" --index "$IX" query --ip "$ADDR" --file "$(basename "$ZST")" --format json | wc -l)
decoded() { "$X" --index "$IX" -v query --ip "$ADDR" --file "$(basename "$1")" --format json 2>&1 >/dev/null | sed -n 's/.*decompressed_bytes=\([0-9]*\), restart_points_used=\([0-9]*\).*/\1 bytes from \2 restart points/p'; }
Z1HITS=$("$X" --index "$IX" query --ip "$ADDR" --file "$(basename "$ZST1")" --format json | wc -l)
Z1DECODED=$(decoded "$ZST1")
ZDECODED=$("$X" --index "$IX" -v query --ip "$ADDR" --file "$(basename "$ZST")" --format json 2>&1 >/dev/null | sed -n 's/.*decompressed_bytes=\([0-9]*\), restart_points_used=\([0-9]*\).*/\1 bytes from \2 restart points/p')
DECODED=$("$X" --index "$IX" -v query --ip "$ADDR" --file "$(basename "$GZ")" --format json 2>&1 >/dev/null | sed -n 's/.*decompressed_bytes=\([0-9]*\), restart_points_used=\([0-9]*\).*/\1 bytes from \2 restart points/p')
load1=$(cut -d' ' -f1-3 /proc/loadavg)

cat <<EOF

load average: $load0 before, $load1 after (2 cores: above 2, other work competed)

| measure | result | reference | ratio |
|---|---|---|---|
| build of one .gz (gzip -1, one deflate stream) | $(med buildgz) s, $(mbps "$(med buildgz)") MB/s uncompressed, $(rss buildgz) MiB | \`gzip -dc\` $(med gzipdc) s, $(mbps "$(med gzipdc)") MB/s | $(ratio "$(med gzipdc)" "$(med buildgz)") |
| build of two .gz at once | $(med buildgz2) s, $(rss buildgz2) MiB | one: $(med buildgz) s | $(awk -v a="$(med buildgz)" -v b="$(med buildgz2)" 'BEGIN { printf "%.2f", 2 * a / b }') x the throughput |
| build of a .zst of 64 MiB frames | $(med buildzst) s, $(mbps "$(med buildzst)") MB/s, $(rss buildzst) MiB | \`zstd -dc\` $(med zstddc) s, $(mbps "$(med zstddc)") MB/s | $(ratio "$(med zstddc)" "$(med buildzst)") |
| build of a .zst of 1 MiB frames | $(med buildzst1) s, $(mbps "$(med buildzst1)") MB/s, $(rss buildzst1) MiB | \`zstd -dc\` $(med zstd1dc) s, $(mbps "$(med zstd1dc)") MB/s | $(ratio "$(med zstd1dc)" "$(med buildzst1)") |
| \`query --ip\` ($HITS hits), .gz, whole process | $(med querygz) s, $(rss querygz) MiB; decoded $DECODED | uncompressed: $(med queryraw) s | $(ratio "$(med queryraw)" "$(med querygz)") |
| \`query --ip\` ($Z1HITS hits), .zst of 1 MiB frames, whole process | $(med queryzst1) s, $(rss queryzst1) MiB; decoded $Z1DECODED | uncompressed: $(med queryraw) s | $(ratio "$(med queryraw)" "$(med queryzst1)") |
| \`query --ip\` ($ZHITS hits), .zst of 64 MiB frames, whole process | $(med queryzst) s, $(rss queryzst) MiB; decoded $ZDECODED | uncompressed: $(med queryraw) s | $(ratio "$(med queryraw)" "$(med queryzst)") |
| restart points in the index | $POINTS bytes | $RAW bytes uncompressed | $(awk -v a="$POINTS" -v b="$RAW" 'BEGIN { printf "%.2f %%", 100 * a / b }') |
EOF
rm -f "$OUT/rss.$$" "$OUT/err.$$"
