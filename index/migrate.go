package index

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"

	"github.com/xffidx/xffidx/format/xff"
)

// ErrOldSchema says the index was written by an older xffidx; a build
// upgrades it.
var ErrOldSchema = errors.New("index written by an older xffidx: run `xffidx build PATH...` or `xffidx prune` once to upgrade it in place")

// oldSchema is the error for an index of an older schema version.
func oldSchema(version string) error {
	return fmt.Errorf("%w (schema %s)", ErrOldSchema, version)
}

// Version 1 key lengths: the version 2 ones without the header byte.
const (
	v1HitKeyLen4  = hitKeyLen4 - 1
	v1HitKeyLen6  = hitKeyLen6 - 1
	v1ValueKeyLen = valueKeyLen - 1
)

// checkSchema fails unless the database holds the current schema. A
// database with neither a schema key nor any catalog entry or hit is new (or
// empty) and current.
func checkSchema(db pebble.Reader) error {
	v, closer, err := db.Get(schemaKey)
	if err == nil {
		version := string(v)
		closer.Close()
		if version == SchemaVersion {
			return nil
		}
		if version == "2" || version == "3" {
			return oldSchema(version)
		}
		return fmt.Errorf("index schema %q: this xffidx reads schema %s only (rebuild the index, or use the xffidx that wrote it)", version[:min(len(version), 16)], SchemaVersion)
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return err
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagFile}, UpperBound: []byte{tagValue + 1}})
	if err != nil {
		return err
	}
	old := it.First()
	if err := it.Close(); err != nil {
		return err
	}
	if old {
		return oldSchema("1")
	}
	return nil
}

// Upgrade brings an index of an older schema to the current one. Schema 1
// to 2: every hit and value key gains the X-Forwarded-For header byte
// (schema 1 knew no other header), and the catalog entries keep
// FileInfo.Headers zero (read as X-Forwarded-For alone). Schema 2 to 3 adds
// key tables ('r', 's') but changes no key; the old catalog entries have
// FileInfo.Tracking zero, which tells the build to read those files again,
// with connection tracking. Schema 3 to 4: of two entries of one path (left
// by a build that died between indexing a changed file and deleting its old
// entry) the older is removed, as Delete does, since readers of schema 4
// take every entry for current. The caller holds the build lock. Each batch
// moves a run of keys atomically and the schema key is written last, so a
// rewrite cut short by a crash is finished by the next call, and readers
// refuse the index until it is done. It does nothing to an index that is
// already current. logger may be nil.
func (s *Store) Upgrade(logger *slog.Logger) error {
	if !s.Exists() {
		return nil
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return s.withDB(false, func(db *pebble.DB) error {
		err := checkSchema(db)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrOldSchema) {
			return fmt.Errorf("%s: %w", s.Dir, err)
		}
		logger.Info("upgrading index to schema "+SchemaVersion, "index", s.Dir)
		moved := 0
		v1 := true
		switch _, closer, err := db.Get(schemaKey); {
		case err == nil:
			v1 = false // schema 2: keys stay as they are
			closer.Close()
		case !errors.Is(err, pebble.ErrNotFound):
			return fmt.Errorf("%s: upgrading index: %w", s.Dir, err)
		}
		for _, table := range []struct {
			tag    byte
			oldLen func(int) bool
		}{
			{tagHit, func(n int) bool { return n == v1HitKeyLen4 || n == v1HitKeyLen6 }},
			{tagValue, func(n int) bool { return n == v1ValueKeyLen }},
		} {
			if !v1 {
				break
			}
			n, err := moveKeys(db, table.tag, table.oldLen)
			if err != nil {
				return fmt.Errorf("%s: upgrading index: %w", s.Dir, err)
			}
			moved += n
		}
		if _, err := convertLegacyEntries(db); err != nil {
			return fmt.Errorf("%s: upgrading index: %w", s.Dir, err)
		}
		if err := retireStale(db); err != nil {
			return fmt.Errorf("%s: upgrading index: %w", s.Dir, err)
		}
		if err := db.Set(schemaKey, []byte(SchemaVersion), pebble.Sync); err != nil {
			return fmt.Errorf("%s: upgrading index: %w", s.Dir, err)
		}
		logger.Info("index upgraded", "index", s.Dir, "keys", moved)
		return nil
	})
}

// moveKeys appends the X-Forwarded-For header byte to every key of a table
// whose length says it is of schema 1.
func moveKeys(db *pebble.DB, tag byte, isOld func(int) bool) (int, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tag}, UpperBound: []byte{tag + 1}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	b := db.NewBatch()
	moved := 0
	var key []byte
	for it.First(); it.Valid(); it.Next() {
		if !isOld(len(it.Key())) {
			continue
		}
		key = append(append(key[:0], it.Key()...), byte(xff.XForwardedFor))
		if err := b.Set(key, it.Value(), nil); err != nil {
			return moved, err
		}
		if err := b.Delete(it.Key(), nil); err != nil {
			return moved, err
		}
		if moved++; b.Len() > 16<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return moved, err
			}
			b = db.NewBatch()
		}
	}
	if err := it.Error(); err != nil {
		return moved, err
	}
	return moved, b.Commit(pebble.Sync)
}

// retireStale removes every catalog entry but the newest (highest id) of
// each path, as Delete does.
func retireStale(db *pebble.DB) error {
	files, err := readEntries(db, nil)
	var invalid InvalidEntries
	if err != nil && !errors.As(err, &invalid) {
		return err // invalid entries are left for readers to report
	}
	newest := map[string]uint32{}
	for _, f := range files {
		newest[f.Path] = max(newest[f.Path], f.ID)
	}
	var stale []FileInfo
	for _, f := range files {
		if f.ID != newest[f.Path] {
			stale = append(stale, f)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	b := db.NewBatch()
	if err := retirePoints(batchRetirer{b}, stale); err != nil {
		return err
	}
	if err := retireRanges(batchRetirer{b}, stale); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}
