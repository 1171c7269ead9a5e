package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/xffidx/xffidx/fleet"
)

func newPublish(g *globals) *cobra.Command {
	var db, sensor string
	cmd := &cobra.Command{
		Use:   "publish --db URL [--sensor NAME]",
		Short: "Bring a central store's rows of this sensor to the local index's content",
		Long: `Publish this sensor's hits to a central SQL store over the PostgreSQL wire
protocol (CockroachDB or PostgreSQL), where query --db answers across every
sensor. Each capture's rows (what a query prints) are decoded here, once,
reading only the hit packets; a new capture's rows are sent, a grown one's
new rows, a renamed one's path is updated, a changed or removed one's rows
are deleted. A second publish right after the first sends nothing.

The schema is created by the first publish. A query never sees a capture
half published; a publish stopped at any moment is finished by the next.

URL is a PostgreSQL URL or keyword/value string; libpq's environment
(PGPASSWORD, PGSSLMODE, PGSERVICE, ...) fills what it leaves out. The
password is never printed. --sensor defaults to the host name.

  xffidx build /var/capture --prune && xffidx publish --db "$XFFIDX_DB"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if db == "" {
				return &exitError{code: exitTrouble, err: errors.New("publish: --db URL is required")}
			}
			if sensor == "" {
				h, err := os.Hostname()
				if err != nil {
					return &exitError{code: exitTrouble, err: fmt.Errorf("publish: no --sensor and no host name: %w", err)}
				}
				sensor = h
			}
			store, err := g.store()
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			pool, err := fleet.Connect(ctx, db)
			if err != nil {
				return &exitError{code: exitTrouble, err: err}
			}
			defer pool.Close()
			st, err := fleet.Publish(ctx, pool, store, sensor)
			for _, p := range st.Problems {
				fmt.Fprintf(g.stderr, "xffidx: %s\n", safe(p.Error()))
			}
			if err != nil && ctx.Err() != nil {
				return &exitError{code: exitTrouble, err: errors.New("publish: interrupted; the store shows each capture as before or as after, and the next publish finishes the work")}
			}
			if err != nil {
				return &exitError{code: exitTrouble, err: errors.New(fleet.Redact(err.Error(), db))}
			}
			if !st.Sent() {
				fmt.Fprintf(g.stderr, "publish: sensor %s: nothing to send, the central store already holds this index's content (%d captures)\n", safe(sensor), st.Unchanged)
			} else {
				fmt.Fprintf(g.stderr, "publish: sensor %s: %d new, %d grown, %d renamed, %d changed, %d removed, %d unchanged captures; %d rows sent, %d deleted\n",
					safe(sensor), st.New, st.Grown, st.Renamed, st.Changed, st.Removed, st.Unchanged, st.RowsSent, st.RowsDeleted)
			}
			if len(st.Problems) > 0 {
				return &exitError{code: exitTrouble, err: errors.New("publish: some captures could not be read (see above); the next publish tries them again")}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "the central store: a PostgreSQL URL (postgres://user@host:26257/xffidx?sslmode=verify-full) or keyword/value string")
	cmd.Flags().StringVar(&sensor, "sensor", "", "this sensor's name in the central store (default: the host name)")
	return cmd
}
