#!/usr/bin/env bash
# How xffidx scales on hostile and large inputs (issue 10 items 13-18),
# each measure side by side with its reference in one run, as ratios:
#
#   zeros     build MB/s on a sparse capture (1 GiB of zeros, and 1 GiB of
#             empty 256 KiB records) against `cat` of the same file
#             (bench/scale-zeros.sh);
#   query     time and peak RSS of query, --flows, --write and top for one
#             address with 100k and 1M hits: memory must not follow the
#             hits (bench/scale-query.sh);
#   index     prune of N vs 4N deleted captures, and a query during it;
#             build peak RSS at 2.5M and 20M entries under ulimit -n 64;
#             a one-address query with 1k vs 200k captures in the catalog
#             (bench/scale-index.sh);
#   hostile   build MB/s on adversarial captures (packets ending in a
#             header-name prefix, open values, thousands of partial names,
#             thousands of addresses per record) against a normal capture
#             (go test -bench PartialLines).
#
#   bench/scale.sh                  # everything at the issue's sizes (~40 min, ~30 GB of /tmp at peak)
#   bench/scale.sh zeros hostile    # some of them
#   QUICK=1 bench/scale.sh          # smaller sizes (a few minutes)
#
# Each part's script takes its own variables (SIZE, HITS, PRUNE_N, ENTRIES:
# see their headers); QUICK sets small ones unless they are given.
set -euo pipefail
cd "$(dirname "$0")/.."

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(zeros hostile query index)
if [ -n "${QUICK:-}" ]; then
	export SIZE=${SIZE:-256M} HITS=${HITS:-"10000 100000"} PRUNE_N=${PRUNE_N:-100} ENTRIES=${ENTRIES:-"250000 2000000"}
fi

echo "xffidx scale bench: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
for part in "${parts[@]}"; do
	echo
	echo "######## $part"
	case $part in
	zeros) bash bench/scale-zeros.sh ;;
	query) bash bench/scale-query.sh ;;
	index) bash bench/scale-index.sh ;;
	hostile) go test ./ingest/ -run '^$' -bench 'PartialLines' -benchtime 1x ;;
	*) echo "unknown part $part (zeros, hostile, query, index)" >&2; exit 2 ;;
	esac
done
