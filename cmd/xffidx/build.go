package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/xffidx/xffidx/ingest"
)

func newBuild(g *globals) *cobra.Command {
	var workers int
	cmd := &cobra.Command{
		Use:   "build [flags] PATH...",
		Short: "Index the X-Forwarded-For addresses of capture files and directories",
		Long: `Index every capture among PATH (files, and directories walked recursively).
Captures are recognised by magic number (pcap, pcapng), not by name; other files
in a directory are passed over. A file already indexed and unchanged is skipped.

A summary goes to stderr. Exit status: 0 all files indexed (warnings, such as a
last record cut short by a capture still being written, are not failures);
2 some file failed or is corrupt in places (its other records are indexed).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b := &ingest.Builder{Store: g.store(), Opts: ingest.Options{Workers: workers, Logger: g.logger()}}
			st := b.Build(args, func(r ingest.FileResult) {
				for _, w := range r.Warnings {
					fmt.Fprintf(g.stderr, "xffidx: warning: %s: %s\n", r.Path, w)
				}
				if r.Err != nil {
					fmt.Fprintln(g.stderr, "xffidx:", r.Err)
				}
			})
			printSummary(g.stderr, st)
			if st.Failed+st.Corrupt > 0 {
				return &exitError{code: exitTrouble}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&workers, "workers", runtime.NumCPU(), "parallel workers per file")
	return cmd
}

func printSummary(w io.Writer, st ingest.Stats) {
	secs := st.Duration.Seconds()
	mbps := 0.0
	if secs > 0 {
		mbps = float64(st.Bytes) / 1e6 / secs
	}
	fmt.Fprintf(w, "indexed %d files (%d with corrupt regions), %d unchanged, %d failed: %.1f MB, %d packets, %d XFF lines, %d addresses, %d non-address elements, %d corrupt bytes skipped, %.2f s, %.1f MB/s\n",
		st.Files, st.Corrupt, st.Unchanged, st.Failed, float64(st.Bytes)/1e6, st.Packets, st.XFFLines, st.Addresses, st.NonAddresses, st.SkippedBytes, secs, mbps)
}
