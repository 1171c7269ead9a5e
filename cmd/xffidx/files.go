package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/query"
)

// fileRow fixes the NDJSON fields of `xffidx files`.
type fileRow struct {
	Path      string   `json:"path"`
	Size      int64    `json:"size"`
	Format    string   `json:"format"`
	LinkTypes []uint32 `json:"link_types"`
	Packets   int64    `json:"packets"`
	Hits      int64    `json:"hits"`
	FirstTS   string   `json:"first_ts"`
	LastTS    string   `json:"last_ts"`
	State     string   `json:"state"`
	// What connection tracking met, and the previous capture of a rotation
	// whose open connections this one took up.
	Gaps          int64  `json:"gaps"`
	ContinuesFrom string `json:"continues_from,omitempty"`
	// A compressed capture's container (gzip, zstd, lz4) and uncompressed
	// size (size is the compressed file's).
	Container string `json:"container,omitempty"`
	DataSize  int64  `json:"data_size,omitempty"`
}

func newFiles(g *globals) *cobra.Command {
	var outFormat string
	cmd := &cobra.Command{
		Use:   "files [--format table|json]",
		Short: "List the indexed captures and whether each is still as indexed",
		Long: `List the indexed captures, one per line, with their state on disk now:
ok (as indexed), grown (records appended since: run build), changed (not the
file that was indexed: run build), missing (gone: run prune).

JSON is NDJSON: {"path","size","format","link_types","packets","hits",
"first_ts","last_ts","state","gaps","continues_from","container",
"data_size"}: gaps counts holes in client streams the capture missed;
continues_from names the previous capture of a rotation whose open
connections this one took up (absent if none); container and data_size,
for a compressed capture, name its container (gzip, zstd, lz4) and give its
uncompressed size (size is the compressed file's).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.store()
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			files, invalid, err := catalog(store)
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			w := bufio.NewWriter(g.stdout)
			defer w.Flush()
			ts := func(t time.Time, f *index.FileInfo) string { return query.FormatTS(t, tsDigits(f)) }
			switch outFormat {
			case "json":
				enc := json.NewEncoder(w)
				enc.SetEscapeHTML(false)
				for _, f := range files {
					enc.Encode(fileRow{f.Path, f.Size, f.Format, f.LinkTypes, f.Packets, f.Hits, ts(f.FirstTS, &f), ts(f.LastTS, &f), string(index.State(&f)), f.Gaps, f.ContinuesFrom, f.Container, f.DataSize})
				}
			case "table", "":
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "STATE\tSIZE\tPACKETS\tHITS\tFIRST\tLAST\tFORMAT\tPATH")
				for _, f := range files {
					kind := f.Format
					if f.Container != "" {
						kind += "/" + f.Container
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", index.State(&f), f.Size, f.Packets, f.Hits,
						ts(f.FirstTS, &f), ts(f.LastTS, &f), kind, query.Sanitize([]byte(f.Path), 512))
				}
				tw.Flush()
			default:
				return &exitError{code: exitTrouble, err: fmt.Errorf("files: unknown --format %q (want table or json)", outFormat)}
			}
			w.Flush()
			return reportInvalid(g, invalid)
		},
	}
	cmd.Flags().StringVar(&outFormat, "format", "table", "output: table or json")
	return cmd
}

// catalog reads the catalog: the valid entries and, apart, the invalid
// ones (see reportInvalid).
func catalog(store *index.Store) ([]index.FileInfo, index.InvalidEntries, error) {
	files, err := store.Catalog()
	var invalid index.InvalidEntries
	if errors.As(err, &invalid) {
		err = nil
	}
	return files, invalid, err
}

// reportInvalid names the invalid catalog entries on stderr, after the
// command's output; they make it exit 2.
func reportInvalid(g *globals, invalid index.InvalidEntries) error {
	for _, e := range invalid {
		fmt.Fprintln(g.stderr, "xffidx:", safe(e.Error()))
	}
	if len(invalid) > 0 {
		return &exitError{code: exitTrouble}
	}
	return nil
}

// tsDigits is the finest timestamp resolution of a capture's interfaces, in
// fractional-second digits.
func tsDigits(f *index.FileInfo) int {
	digits := 0
	for _, sec := range f.Sections {
		for _, iface := range sec.Ifaces {
			d := int(iface.TSResol)
			if iface.TSResol&0x80 != 0 || d > 9 {
				d = 9
			}
			digits = max(digits, d)
		}
	}
	return digits
}
