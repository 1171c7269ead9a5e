package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/xffidx/xffidx/format/compressed"
	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/ingest"
	"github.com/xffidx/xffidx/query"
)

const exitBusy = 3

// buildFlags are the options build and prune share.
type buildFlags struct {
	workers     int
	noWait      bool
	prune       bool
	quiet       bool
	rebuild     bool
	seekSpacing int // KiB
}

func newBuild(g *globals) *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:   "build [flags] PATH...",
		Short: "Index the X-Forwarded-For addresses of capture files and directories",
		Long: `Index every capture among PATH (files, and directories walked recursively).
Captures are recognised by magic number (pcap, pcapng), not by name; other files
in a directory are passed over.

Builds are incremental: a new file is indexed whole; a file that grew (a capture
still being written) from its last complete record on; an unchanged file costs
a stat; a file renamed or moved (a rotated capture) keeps its hits under its new
path without being read again; a file whose start changed is indexed again from
scratch. A last record cut short is not an error: the next build reads it.

One build runs at a time per index: a second one waits for the first (or, with
--no-wait, exits 3). Queries run at any time.

On a terminal a progress line is shown; otherwise only problems and one summary
line are printed (on stderr).

--rebuild is the way out of a corrupt index: it moves the database aside
(DIR/db.damaged-TIME, kept until you delete it) and indexes again, into a new
one, every capture the old one lists that still exists, and PATH if given (if
the list cannot be read, PATH must name the captures).

Exit status: 0 all well; 2 a file failed or is corrupt in places (every record
around the corruption is indexed), or the index is corrupt or could not be
written; 3 another build holds the index (--no-wait).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if f.rebuild {
				return nil
			}
			return cobra.MinimumNArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(g, f, func(b *ingest.Builder, report func(ingest.FileResult)) (ingest.Stats, error) {
				if !f.rebuild {
					return b.Build(args, report)
				}
				st, aside, err := b.Rebuild(args, report)
				if aside != "" && g.logFormat == "json" {
					b.Opts.Logger.Warn("the old database was moved aside; delete it when you no longer need it", "path", aside)
				} else if aside != "" {
					fmt.Fprintf(g.stderr, "xffidx: the old database was moved to %s (delete it when you no longer need it)\n", safe(aside))
				}
				return st, err
			})
		},
	}
	cmd.Flags().IntVar(&f.workers, "workers", runtime.NumCPU(), "parallel workers per file (and compressed files, or zstd and lz4 frames, decoded at once)")
	cmd.Flags().BoolVar(&f.noWait, "no-wait", false, "exit 3 at once if another build holds the index, instead of waiting")
	cmd.Flags().BoolVar(&f.prune, "prune", false, "also drop the hits of indexed files that no longer exist")
	cmd.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "print errors only: no progress, warnings or summary")
	cmd.Flags().BoolVar(&f.rebuild, "rebuild", false, "move the database aside and index again every capture it lists (and PATH): for a corrupt index")
	cmd.Flags().IntVar(&f.seekSpacing, "seek-spacing", int(compressed.DefaultSpacing>>10), "KiB of uncompressed data between the restart points stored inside one deflate stream of a gzip capture: smaller answers faster, at about 32 KiB (deflated) per point")
	return cmd
}

func newPrune(g *globals) *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Drop the hits of indexed files that no longer exist",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(g, f, func(b *ingest.Builder, report func(ingest.FileResult)) (ingest.Stats, error) {
				return b.Prune(report)
			})
		},
	}
	cmd.Flags().BoolVar(&f.noWait, "no-wait", false, "exit 3 at once if a build holds the index")
	cmd.Flags().BoolVarP(&f.quiet, "quiet", "q", false, "print errors only")
	return cmd
}

func runBuild(g *globals, f buildFlags, do func(*ingest.Builder, func(ingest.FileResult)) (ingest.Stats, error)) error {
	if os.Getenv("GOGC") == "" {
		// The build's live heap is small (bounded buffers) but churns with
		// per-chunk results; a tighter GC target keeps the peak RSS flat
		// across capture sizes, at a cost too small to measure.
		debug.SetGCPercent(50)
	}
	if f.seekSpacing != 0 && f.seekSpacing < 64 { // 0: prune, which stores none
		return &exitError{code: exitTrouble, err: fmt.Errorf("--seek-spacing %d: at least 64 (KiB)", f.seekSpacing)}
	}
	log := g.logger()
	rep := &reporter{g: g, log: log, quiet: f.quiet}
	if file, ok := g.stderr.(*os.File); ok && !f.quiet && g.logFormat != "json" && term.IsTerminal(int(file.Fd())) {
		rep.bar = g.stderr
	}
	store, err := g.store()
	if err != nil {
		return &exitError{code: exitTrouble, err: err}
	}
	b := &ingest.Builder{Store: store, Opts: ingest.Options{
		Workers: f.workers, Logger: log, NoWait: f.noWait, Prune: f.prune, Progress: rep.progress,
		SeekSpacing: int64(f.seekSpacing) << 10,
	}}
	st, err := do(b, rep.file)
	rep.clearBar()
	if errors.Is(err, index.ErrBusy) {
		return &exitError{code: exitBusy, err: fmt.Errorf("%w (exit 3; drop --no-wait to wait for it)", err)}
	}
	if err != nil {
		return &exitError{code: exitTrouble, err: err}
	}
	if !f.quiet {
		rep.summary(st)
	}
	if st.Failed+st.Corrupt > 0 {
		return &exitError{code: exitTrouble}
	}
	return nil
}

// reporter prints a build's problems, progress and summary.
type reporter struct {
	g        *globals
	log      *slog.Logger
	quiet    bool
	bar      io.Writer // the terminal, when a progress line is shown
	lastDraw time.Time
	drawn    bool
}

func (r *reporter) json() bool { return r.g.logFormat == "json" }

func (r *reporter) file(res ingest.FileResult) {
	r.clearBar()
	for _, w := range res.Warnings {
		if r.quiet {
			break
		}
		if r.json() {
			r.log.Warn(w, "file", res.Path)
		} else {
			fmt.Fprintf(r.g.stderr, "xffidx: warning: %s: %s\n", safe(res.Path), safe(w))
		}
	}
	if res.Err != nil {
		if r.json() {
			r.log.Error(res.Err.Error(), "file", res.Path, "action", string(res.Action))
		} else {
			fmt.Fprintln(r.g.stderr, "xffidx:", safe(res.Err.Error()))
		}
	}
	if res.Renamed != "" && !r.quiet {
		r.log.Info("renamed", "from", res.Renamed, "to", res.Path)
	}
}

// progress draws the progress line at most ten times a second.
func (r *reporter) progress(p ingest.Progress) {
	if r.bar == nil || time.Since(r.lastDraw) < 100*time.Millisecond {
		return
	}
	r.lastDraw = time.Now()
	elapsed := time.Since(p.Started).Seconds()
	rate := float64(p.TotalDone) / max(elapsed, 1e-3)
	eta := "?"
	if rate > 0 && p.TotalSize >= p.TotalDone {
		eta = (time.Duration(float64(p.TotalSize-p.TotalDone) / rate * float64(time.Second))).Round(time.Second).String()
	}
	name := filepath.Base(p.File)
	if len(name) > 40 {
		name = name[:37] + "..."
	}
	fmt.Fprintf(r.bar, "\r\033[K%s  %s / %s  %s/s  ETA %s", safe(name), humanBytes(p.TotalDone), humanBytes(p.TotalSize), humanBytes(int64(rate)), eta)
	r.drawn = true
}

func (r *reporter) clearBar() {
	if r.drawn {
		fmt.Fprint(r.bar, "\r\033[K")
		r.drawn = false
	}
}

func (r *reporter) summary(st ingest.Stats) {
	secs := st.Duration.Seconds()
	mbps := 0.0
	if secs > 0 {
		mbps = float64(st.Bytes) / 1e6 / secs
	}
	if r.json() {
		r.log.Info("build done", "new", st.New, "grown", st.Grown, "unchanged", st.Unchanged, "renamed", st.Renamed,
			"changed", st.Changed, "reindexed", st.Reindexed, "pruned", st.Pruned, "failed", st.Failed, "corrupt", st.Corrupt, "bytes", st.Bytes,
			"packets", st.Packets, "xff_lines", st.XFFLines, "other_header_lines", st.OtherLines, "continuation_lines", st.ContLines,
			"hits", st.Hits, "addresses", st.Addresses, "non_addresses", st.NonAddresses, "skipped_bytes", st.SkippedBytes,
			"retransmitted_segments", st.Dups, "reordered_segments", st.Early, "gaps", st.Gaps, "evicted_blocks", st.Evicted, "overflow", st.Overflow,
			"seconds", secs, "mb_per_s", mbps)
		return
	}
	reindexed := ""
	if st.Reindexed > 0 {
		reindexed = fmt.Sprintf(", %d re-read for what an older xffidx did not index (other headers, header blocks over several segments)", st.Reindexed)
	}
	bounds := ""
	if st.Overflow > 0 {
		bounds = fmt.Sprintf(", %d over a memory bound (results may depend on --workers)", st.Overflow)
	}
	fmt.Fprintf(r.g.stderr, "files: %d new, %d grown, %d unchanged, %d renamed, %d changed, %d pruned, %d failed (%d with corrupt regions)%s; read %.1f MB: %d packets, %d XFF lines, %d other forwarding header lines (%d in a later segment than their request line), %d hits, %d addresses, %d non-address elements, %d corrupt bytes skipped; connections: %d retransmitted and %d reordered segments, %d gaps, %d open header blocks given up%s; %.2f s, %.1f MB/s\n",
		st.New, st.Grown, st.Unchanged, st.Renamed, st.Changed, st.Pruned, st.Failed, st.Corrupt, reindexed,
		float64(st.Bytes)/1e6, st.Packets, st.XFFLines, st.OtherLines, st.ContLines, st.Hits, st.Addresses, st.NonAddresses, st.SkippedBytes,
		st.Dups, st.Early, st.Gaps, st.Evicted, bounds, secs, mbps)
}

func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n), "kMGTPE"
	i := -1
	for v >= unit && i < len(suffix)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %cB", v, suffix[i])
}

// safe escapes file names and messages before they reach a terminal, as
// query output is escaped (query.Sanitize).
func safe(s string) string {
	return query.Sanitize([]byte(s), 1<<16)
}
