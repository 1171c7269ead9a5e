package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/xffidx/xffidx/index"
)

// versionText says which build this is, for a bug report: the module
// version and VCS revision the Go toolchain stamped into the binary (go
// build and go install both do), whether the tree had uncommitted changes,
// the Go version, and the index schema this build reads and writes.
func versionText(bi *debug.BuildInfo, ok bool) string {
	version, revision, when, modified := "(unknown)", "", "", ""
	goVersion := runtime.Version()
	if ok && bi != nil {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "xffidx %s\n", version)
	if revision == "" {
		b.WriteString("revision: unknown (built without version control information)\n")
	} else {
		b.WriteString("revision: " + revision)
		if when != "" {
			b.WriteString(" (" + when + ")")
		}
		if modified == "true" {
			b.WriteString(", with uncommitted changes")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "go: %s %s/%s\n", goVersion, runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "index schema: %s\n", index.SchemaVersion)
	return b.String()
}

// buildVersion is this binary's versionText.
func buildVersion() string { return versionText(debug.ReadBuildInfo()) }

func newVersion(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision, Go version and index schema of this build",
		Long: `Print which build this is, for a bug report: the module version and the VCS
revision the Go toolchain recorded when it built the binary (and whether the
tree had uncommitted changes), the Go version, and the index schema version
this build reads and writes. xffidx --version prints the same.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprint(g.stdout, buildVersion())
			return err
		},
	}
}
