// Package fleet publishes a sensor's hits to a central SQL store spoken to
// over the PostgreSQL wire protocol (CockroachDB in production, PostgreSQL
// for small sites and tests), and answers look-ups across every sensor from
// it. The packets stay on the sensor that captured them; the store holds
// the rows a query prints.
//
// # Central schema (version 1)
//
// Three tables, created by the first publish (CREATE TABLE IF NOT EXISTS,
// the same statements on both engines):
//
//	xffidx_meta  (name PRIMARY KEY, value)         "schema" → "1"
//	xffidx_files (sensor, fid) PRIMARY KEY         one row per capture a
//	             path, size, fingerprint,          sensor published: fid is
//	             gen, pending, stale_from,         the sensor's index file
//	             published_to, provisional_from,   id, the rest says which
//	             hits                              rows are visible
//	xffidx_hits  (addr, sensor, fid, off,          one row per (packet,
//	             header, gen) PRIMARY KEY          header, address), with
//	             pos, ts_sec, ts_nsec, ts_digits,  what a query prints
//	             src_ip, src_port, dst_ip,
//	             dst_port, proto, xff, method,
//	             host, path
//
// addr is the family byte (4 or 6) and the address bytes, as in the Pebble
// keys (IPv4-mapped IPv6 stored as IPv4), in a bytes column: one address
// and one CIDR prefix are each one range scan of the primary key, with
// explicit bounds (CockroachDB does not index the inet containment
// operators). Timestamps keep the capture's nanoseconds (seconds and
// nanoseconds in two columns, and the number of fractional digits the
// capture records). A secondary index (sensor, fid, off) serves publish's
// deletes.
//
// # Visibility: generations
//
// Rows carry the generation (gen) of the publish that wrote them; a files
// row's gen is the newest generation queries may see (0: none yet). A
// query shows a row when its gen is at most the file's, and, for an older
// gen, when its offset is below the file's stale_from (the rows a grown
// capture's publish replaced; -1 when none). A publish writes a file's rows
// under gen+1, invisible, and then makes them visible in one UPDATE of the
// files row: a query sees a capture as before or as after, never half of
// it. pending holds the token of the publish writing gen+1 (0: none): the
// UPDATE that makes rows visible applies only while it holds, so the next
// publish after a crash takes the token back first (a statement of the
// dead publish that the server still runs can then make nothing visible)
// and deletes the invisible rows that one left before it writes again.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SchemaVersion is the central schema this xffidx reads and writes.
const SchemaVersion = 1

// schemaVersionText is SchemaVersion as xffidx_meta holds it.
const schemaVersionText = "1"

// schemaStatements create the central schema. They use only what both
// PostgreSQL and CockroachDB accept (no SERIAL, no inet operators, no
// PostgreSQL-only options): TestStatementsArePortable checks them and the
// statements of the read and write paths against that list.
var schemaStatements = []string{
	`CREATE TABLE IF NOT EXISTS xffidx_meta (
		name TEXT PRIMARY KEY,
		value TEXT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS xffidx_files (
		sensor TEXT NOT NULL,
		fid BIGINT NOT NULL,
		path TEXT NOT NULL,
		size BIGINT NOT NULL,
		fingerprint TEXT NOT NULL,
		gen BIGINT NOT NULL,
		pending BIGINT NOT NULL,
		stale_from BIGINT NOT NULL,
		published_to BIGINT NOT NULL,
		provisional_from BIGINT NOT NULL,
		hits BIGINT NOT NULL,
		PRIMARY KEY (sensor, fid)
	)`,
	`CREATE TABLE IF NOT EXISTS xffidx_hits (
		addr BYTEA NOT NULL,
		sensor TEXT NOT NULL,
		fid BIGINT NOT NULL,
		off BIGINT NOT NULL,
		header SMALLINT NOT NULL,
		gen BIGINT NOT NULL,
		pos INT NOT NULL,
		ts_sec BIGINT NOT NULL,
		ts_nsec INT NOT NULL,
		ts_digits SMALLINT NOT NULL,
		src_ip TEXT NOT NULL,
		src_port INT NOT NULL,
		dst_ip TEXT NOT NULL,
		dst_port INT NOT NULL,
		proto TEXT NOT NULL,
		xff BYTEA NOT NULL,
		method BYTEA NOT NULL,
		host BYTEA NOT NULL,
		path BYTEA NOT NULL,
		PRIMARY KEY (addr, sensor, fid, off, header, gen)
	)`,
	`CREATE INDEX IF NOT EXISTS xffidx_hits_by_file ON xffidx_hits (sensor, fid, off)`,
	`INSERT INTO xffidx_meta (name, value) VALUES ('schema', '` + schemaVersionText + `') ON CONFLICT (name) DO NOTHING`,
}

// ErrNewerSchema says the central store was made by a newer xffidx.
var ErrNewerSchema = errors.New("the central store was made by a newer xffidx")

// EnsureSchema creates the central schema if it is not there, and checks
// its version. When the schema is there it sends no DDL, so that a
// publisher role needs no CREATE privilege once an administrator (or a
// first publish) made it.
func EnsureSchema(ctx context.Context, pool *pgxpool.Pool) error {
	if err := checkSchema(ctx, pool); err == nil || errors.Is(err, ErrNewerSchema) {
		return err
	}
	for _, st := range schemaStatements {
		if err := execDDL(ctx, pool, st); err != nil {
			return fmt.Errorf("creating the central schema: %w", err)
		}
	}
	return checkSchema(ctx, pool)
}

// ddlAttempts bounds execDDL's tries of one statement.
const ddlAttempts = 5

// execDDL runs one of the schema's idempotent statements, again when it
// lost a race with another publisher creating the same object. IF NOT
// EXISTS is not atomic with the creation: PostgreSQL checks the catalog,
// then inserts into it, and of two sensors making a fresh store at once
// one fails on the catalog's unique index (23505; or 42P07, 42710 when the
// other's creation committed in between) once the other commits.
// CockroachDB makes the loser retry (40001). Run again, the statement
// finds the object and does nothing.
func execDDL(ctx context.Context, pool *pgxpool.Pool, stmt string) error {
	for attempt := 1; ; attempt++ {
		_, err := pool.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if err == nil || attempt == ddlAttempts || !errors.As(err, &pgErr) {
			return err
		}
		switch pgErr.Code {
		case "23505", "42P07", "42710", "40001":
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 10 * time.Millisecond):
		}
	}
}

// checkSchema returns an error unless the store holds schema SchemaVersion.
func checkSchema(ctx context.Context, db Querier) error {
	var v string
	err := db.QueryRow(ctx, `SELECT value FROM xffidx_meta WHERE name = 'schema'`).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return errors.New("the central store has no xffidx schema yet: run `xffidx publish` on a sensor first")
	}
	if err != nil {
		return fmt.Errorf("reading the central schema version: %w", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("central schema version %q does not read", v)
	}
	if n > SchemaVersion {
		return fmt.Errorf("%w (schema %d; this one reads %d): upgrade xffidx", ErrNewerSchema, n, SchemaVersion)
	}
	return nil
}
