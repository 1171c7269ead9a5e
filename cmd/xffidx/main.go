// Command xffidx indexes the X-Forwarded-For addresses of packet captures
// and finds the connections that carried a client address. It only wires
// flags to the ingest, index and query packages.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/ingest"
	"github.com/xffidx/xffidx/query"
)

// Exit statuses, as grep's.
const (
	exitFound   = 0
	exitNone    = 1
	exitTrouble = 2
)

// exitError carries an exit status out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	var ee *exitError
	switch {
	case err == nil:
		return exitFound
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintln(stderr, "xffidx:", ee.err)
		}
		return ee.code
	default:
		fmt.Fprintln(stderr, "xffidx:", err)
		return exitTrouble
	}
}

type globals struct {
	indexDir   string
	cpuProfile string
	logFormat  string
	verbose    bool
	stdout     io.Writer
	stderr     io.Writer
}

// defaultIndexDir is --index's default: $XFFIDX_INDEX, else
// $XDG_DATA_HOME/xffidx, else ~/.local/share/xffidx.
func defaultIndexDir() string {
	if d := os.Getenv("XFFIDX_INDEX"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "xffidx")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".", ".xffidx")
	}
	return filepath.Join(home, ".local", "share", "xffidx")
}

func (g *globals) store() *index.Store {
	dir := g.indexDir
	if dir == "" {
		dir = defaultIndexDir()
	}
	return &index.Store{Dir: dir, LockWait: 30 * time.Second}
}

func (g *globals) logger() *slog.Logger {
	level := slog.LevelWarn
	if g.verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(g.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(g.stderr, opts))
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "xffidx",
		Short: "Find the connections behind a proxy that carried a client IP in X-Forwarded-For",
		Long: `xffidx indexes every X-Forwarded-For address in pcap and pcapng captures once,
then answers "which connections carried this client address" in milliseconds,
reading only the packets the index points at.

  xffidx build capture.pcap          # one parallel pass over the capture
  xffidx query --ip 203.0.113.7      # the 5-tuples of the packets that carried it

The index lives in --index DIR, else $XFFIDX_INDEX, else $XDG_DATA_HOME/xffidx
(~/.local/share/xffidx).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.indexDir, "index", "", "index directory (default $XFFIDX_INDEX, else $XDG_DATA_HOME/xffidx)")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log more")
	root.PersistentFlags().StringVar(&g.cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) to this file")
	root.PersistentFlags().MarkHidden("cpuprofile")
	var profile *os.File
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if g.cpuProfile == "" {
			return nil
		}
		f, err := os.Create(g.cpuProfile)
		if err != nil {
			return err
		}
		profile = f
		return pprof.StartCPUProfile(f)
	}
	root.PersistentPostRun = func(cmd *cobra.Command, args []string) {
		if profile != nil {
			pprof.StopCPUProfile()
			profile.Close()
		}
	}
	root.AddCommand(newBuild(g), newQuery(g))
	return root
}

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

func newQuery(g *globals) *cobra.Command {
	var ips []string
	var outFormat string
	cmd := &cobra.Command{
		Use:   "query --ip ADDR [flags]",
		Short: "Print the connections whose X-Forwarded-For values held an address",
		Long: `Print one row per packet whose X-Forwarded-For values hold ADDR (at any
position in the list), with its innermost TCP 5-tuple and timestamp, reading
only those packet records.

Formats: table (the default on a terminal), json (the default otherwise; NDJSON,
one object per hit: xff_ip, xff, file, offset, ts, src_ip, src_port, dst_ip,
dst_port, proto), csv (RFC 4180 with a header row).

Exit status, as grep's: 0 hits found, 1 none, 2 error (including a capture that
vanished or changed since it was indexed; its hits are reported, not decoded).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(ips) == 0 {
				return &exitError{code: exitTrouble, err: errors.New("query: --ip ADDR is required")}
			}
			var prefixes []netip.Prefix
			for _, s := range ips {
				a, err := netip.ParseAddr(strings.Trim(s, "[]"))
				if err != nil {
					return &exitError{code: exitTrouble, err: fmt.Errorf("query: --ip %q: not an IP address", s)}
				}
				a = a.WithZone("").Unmap()
				prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
			}
			if outFormat == "" {
				// People get the table; pipes and scripts get NDJSON.
				outFormat = query.FormatJSON
				if f, ok := g.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					outFormat = query.FormatTable
				}
			}
			res, err := query.Lookup(g.store(), prefixes)
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			if err := query.Write(g.stdout, outFormat, res.Rows); err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			for _, p := range res.Problems {
				fmt.Fprintln(g.stderr, "xffidx:", query.Sanitize([]byte(p.Error()), 1024))
			}
			switch {
			case len(res.Problems) > 0:
				return &exitError{code: exitTrouble}
			case len(res.Rows) == 0:
				return &exitError{code: exitNone}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&ips, "ip", nil, "client address to look for (IPv4 or IPv6, any spelling)")
	cmd.Flags().StringVar(&outFormat, "format", "", "output: table, json or csv (default: table on a terminal, else json)")
	return cmd
}
