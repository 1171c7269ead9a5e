package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newStats(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Print index totals and its size on disk",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.store()
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			files, invalid, err := catalog(store)
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			var bytes, packets, hits, addrs, xffLines, otherLines, contLines, gaps int64
			for _, f := range files {
				bytes += f.Size
				packets += f.Packets
				hits += f.Hits
				addrs += f.Addresses
				xffLines += f.XFFLines
				otherLines += f.OtherLines
				contLines += f.ContLines
				gaps += f.Gaps
			}
			disk, err := store.DiskUsage()
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			perEntry := 0.0
			if addrs > 0 {
				perEntry = float64(disk) / float64(addrs)
			}
			fmt.Fprintf(g.stdout, "files\t%d\ncapture bytes\t%d\npackets\t%d\nhit packets\t%d\naddress entries\t%d\nindex bytes\t%d\nindex bytes per entry\t%.1f\nxff lines\t%d\nother forwarding header lines\t%d\nlines in a later segment than their request line\t%d\ngaps\t%d\n",
				len(files), bytes, packets, hits, addrs, disk, perEntry, xffLines, otherLines, contLines, gaps)
			return reportInvalid(g, invalid)
		},
	}
}

func newCompact(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "compact",
		Short: "Compact the index: smaller on disk, faster to search",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.store()
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			if err := store.Compact(); err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			return nil
		},
	}
}
