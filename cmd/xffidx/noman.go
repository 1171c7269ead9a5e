//go:build !man

package main

import "github.com/spf13/cobra"

// extraCommands are the commands built with a tag only (man.go, -tags man):
// none here.
func extraCommands(*globals) []*cobra.Command { return nil }
