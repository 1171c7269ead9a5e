// Command xffidx indexes the X-Forwarded-For addresses of packet captures
// and finds the connections that carried a client address. It only wires
// flags to the ingest, index and query packages.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/xffidx/xffidx/index"
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
	return runWithInput(os.Stdin, args, stdout, stderr)
}

// runWithInput is run with stdin (what --ip-file - reads) given.
func runWithInput(stdin io.Reader, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetIn(stdin)
	root.SetArgs(args)
	err := root.Execute()
	var ee *exitError
	switch {
	case err == nil:
		return exitFound
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintln(stderr, "xffidx:", safe(ee.err.Error()))
		}
		return ee.code
	default:
		fmt.Fprintln(stderr, "xffidx:", safe(err.Error()))
		return exitTrouble
	}
}

type globals struct {
	indexDir   string
	cpuProfile string
	memProfile string
	logFormat  string
	verbose    bool
	timings    bool
	start      time.Time // when the command line began to run
	stdout     io.Writer
	stderr     io.Writer
}

// defaultIndexDir is --index's default: $XFFIDX_INDEX, else
// $XDG_DATA_HOME/xffidx, else ~/.local/share/xffidx. Without a home there
// is no default: an index silently made in whatever directory a cron job
// runs in would be found by no later query.
func defaultIndexDir() (string, error) {
	if d := os.Getenv("XFFIDX_INDEX"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "xffidx"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no index directory: %w; give --index DIR or set XFFIDX_INDEX", err)
	}
	return filepath.Join(home, ".local", "share", "xffidx"), nil
}

func (g *globals) store() (*index.Store, error) {
	dir := g.indexDir
	if dir == "" {
		var err error
		if dir, err = defaultIndexDir(); err != nil {
			return nil, err
		}
	}
	return &index.Store{Dir: dir, LockWait: 30 * time.Second}, nil
}

func (g *globals) logger() *slog.Logger {
	// Text mode prints its own lines and logs only warnings; JSON mode is
	// for log shippers and carries the summary as an Info record.
	level := slog.LevelWarn
	if g.logFormat == "json" {
		level = slog.LevelInfo
	}
	if g.verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(g.stderr, opts))
	}
	return slog.New(newLineHandler(g.stderr, level))
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr, start: time.Now()}
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
		Version:       buildVersion(),
	}
	// --version prints what the version command does, whole.
	root.SetVersionTemplate("{{.Version}}")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.indexDir, "index", "", "index directory (default $XFFIDX_INDEX, else $XDG_DATA_HOME/xffidx)")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log more")
	root.PersistentFlags().StringVar(&g.cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) to this file")
	root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentFlags().StringVar(&g.memProfile, "memprofile", "", "write an allocation profile (pprof) to this file at the end")
	root.PersistentFlags().MarkHidden("memprofile")
	root.PersistentFlags().BoolVar(&g.timings, "timings", false, "print where a query's time went on stderr (bench/run.sh)")
	root.PersistentFlags().MarkHidden("timings")
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
		if g.memProfile != "" {
			if f, err := os.Create(g.memProfile); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}
	}
	root.AddCommand(newBuild(g), newQuery(g), newPublish(g), newFiles(g), newPrune(g), newStats(g), newCompact(g), newTop(g), newVersion(g))
	root.AddCommand(extraCommands(g)...)
	return root
}
