//go:build man

// The man command is built only with -tags man (go run -tags man
// ./cmd/xffidx man DIR): its Markdown renderer's package initialisation
// (about 2 ms) would otherwise be paid by every query.

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manHeader is the header of every generated man page.
func manHeader() *doc.GenManHeader {
	return &doc.GenManHeader{Title: "XFFIDX", Section: "1", Source: "xffidx", Manual: "xffidx manual"}
}

// extraCommands are the commands built with a tag only: here, man.
func extraCommands(g *globals) []*cobra.Command { return []*cobra.Command{newMan(g)} }

func newMan(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write a man page for every command into DIR (for packagers: install DIR/*.1 into man1)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // the same pages from the same source, whenever made
			if err := doc.GenManTree(root, manHeader(), dir); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			fmt.Fprintf(g.stderr, "xffidx: man pages written to %s\n", safe(dir))
			return nil
		},
	}
}
