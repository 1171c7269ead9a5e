package ingest

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
)

var everything = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// downgrade rewrites an index as xffidx wrote it before the other headers
// (schema 1, as index/index.go describes it): hit and value keys without
// the header byte, X-Forwarded-For ones only, no schema key, catalog
// entries without headers or other-header counts. If half is set, only
// every other hit key is rewritten: an upgrade cut short by a crash.
func downgrade(t *testing.T, store *index.Store, half bool) {
	t.Helper()
	entries := jsonEntries(t, store)
	db, err := pebble.Open(filepath.Join(store.Dir, "db"), &pebble.Options{Logger: quietLog{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := db.NewBatch()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for it.First(); it.Valid(); it.Next() {
		k := slices.Clone(it.Key())
		switch k[0] {
		case 'h', 'v':
			b.Delete(k, nil)
			if xff.Header(k[len(k)-1]) != xff.XForwardedFor {
				continue
			}
			if n++; half && n%2 == 0 && k[0] == 'h' {
				b.Set(k, slices.Clone(it.Value()), nil)
				continue
			}
			b.Set(k[:len(k)-1], slices.Clone(it.Value()), nil)
		case 'm':
			b.Delete(k, nil)
		case 'f':
			f := entries[string(k)]
			delete(f, "headers")
			delete(f, "other_header_lines")
			v, _ := json.Marshal(f)
			b.Set(k, v, nil)
		}
	}
	it.Close()
	if n == 0 {
		t.Fatal("no X-Forwarded-For keys to downgrade")
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// jsonEntries returns the store's catalog entries as the JSON objects
// xffidx wrote before schema 4, by key.
func jsonEntries(t *testing.T, store *index.Store) map[string]map[string]any {
	t.Helper()
	files, err := store.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, f := range files {
		v, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(v, &m); err != nil {
			t.Fatal(err)
		}
		out[string(binary.BigEndian.AppendUint32([]byte{'f'}, f.ID))] = m
	}
	return out
}

type quietLog struct{}

func (quietLog) Infof(string, ...any)              {}
func (quietLog) Errorf(string, ...any)             {}
func (quietLog) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// TestUpgradeSchema1: an index written by an older xffidx is refused by
// queries with a clear error, upgraded in place by the next build (also
// after an upgrade cut short), answers X-Forwarded-For look-ups as before
// right after the upgrade, and that build reads the old captures again for
// the other headers: the index then equals a fresh build's.
func TestUpgradeSchema1(t *testing.T) {
	files := corpusFiles(t)
	var captures []string
	for _, f := range files {
		if b, _ := os.ReadFile(f); len(b) < 4<<20 {
			captures = append(captures, f)
		}
	}
	fresh := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	if _, err := (&Builder{Store: fresh}).Build(captures, nil); err != nil {
		t.Fatal(err)
	}
	want := answers(t, fresh)
	wantXFF, _, err := fresh.Lookup(everything, xff.SetOf(xff.XForwardedFor))
	if err != nil {
		t.Fatal(err)
	}
	others := 0
	for _, a := range want {
		if strings.HasPrefix(a, "hit ") && !strings.Contains(a, " X-Forwarded-For ") {
			others++
		}
	}
	if others == 0 {
		t.Fatal("the corpus has no other forwarding headers: the test would not see them come back")
	}

	for _, half := range []bool{false, true} {
		store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
		if _, err := (&Builder{Store: store}).Build(captures, nil); err != nil {
			t.Fatal(err)
		}
		downgrade(t, store, half)
		if _, err := store.Catalog(); !errors.Is(err, index.ErrOldSchema) {
			t.Fatalf("half %v: catalog of a schema 1 index: %v", half, err)
		}
		if err := store.Upgrade(nil); err != nil {
			t.Fatal(err)
		}
		got, _, err := store.Lookup(everything, xff.SetOf(xff.XForwardedFor))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(wantXFF) {
			t.Fatalf("half %v: after the upgrade %d X-Forwarded-For hits, fresh build %d", half, len(got), len(wantXFF))
		}
		for i := range got {
			g, w := got[i], wantXFF[i]
			if g.Addr != w.Addr || g.File.Path != w.File.Path || g.Offset != w.Offset || g.Pos != w.Pos || string(g.Raw) != string(w.Raw) || g.Header != xff.XForwardedFor {
				t.Fatalf("half %v: hit %d: %+v, fresh %+v", half, i, g, w)
			}
		}
		st, err := (&Builder{Store: store}).Build(captures, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Reindexed != len(captures) {
			t.Errorf("half %v: %d files re-read, want %d", half, st.Reindexed, len(captures))
		}
		if diff := firstDiff(answers(t, store), want); diff != "" {
			t.Errorf("half %v: after the build, unlike a fresh build: %s", half, diff)
		}
		st, err = (&Builder{Store: store}).Build(captures, nil)
		if err != nil || st.Unchanged != len(captures) {
			t.Errorf("half %v: the next build: %+v %v", half, st, err)
		}
	}
}

// TestUpgradeSchema2: an index written before connection tracking (schema
// 2: no request records, no saved state, catalog entries without
// "tracking") is refused by queries until a build or prune marks it
// schema 3; it then answers as before, and the build reads its captures
// again, with connection tracking: the index equals a fresh build's.
func TestUpgradeSchema2(t *testing.T) {
	var captures []string
	for _, f := range corpusFiles(t) {
		if b, _ := os.ReadFile(f); len(b) < 4<<20 {
			captures = append(captures, f)
		}
	}
	path, _ := busyCapture(t, capgen.BusyConfig{Seed: 31, TargetBytes: 1 << 20, Conns: 300})
	captures = append(captures, path)
	fresh := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	if _, err := (&Builder{Store: fresh}).Build(captures, nil); err != nil {
		t.Fatal(err)
	}
	want := answers(t, fresh)

	store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	if _, err := (&Builder{Store: store}).Build(captures, nil); err != nil {
		t.Fatal(err)
	}
	before, _, err := store.Lookup(everything, xff.AllHeaders)
	if err != nil {
		t.Fatal(err)
	}
	entries := jsonEntries(t, store)
	func() {
		db, err := pebble.Open(filepath.Join(store.Dir, "db"), &pebble.Options{Logger: quietLog{}})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		b := db.NewBatch()
		it, _ := db.NewIter(nil)
		for it.First(); it.Valid(); it.Next() {
			k := slices.Clone(it.Key())
			switch k[0] {
			case 'r', 's':
				b.Delete(k, nil)
			case 'm':
				b.Set(k, []byte("2"), nil)
			case 'f':
				f := entries[string(k)]
				delete(f, "tracking")
				v, _ := json.Marshal(f)
				b.Set(k, v, nil)
			}
		}
		it.Close()
		if err := b.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}()
	if _, err := store.Catalog(); !errors.Is(err, index.ErrOldSchema) || !strings.Contains(err.Error(), "schema 2") {
		t.Fatalf("catalog of a schema 2 index: %v", err)
	}
	if err := store.Upgrade(nil); err != nil {
		t.Fatal(err)
	}
	got, _, err := store.Lookup(everything, xff.AllHeaders)
	if err != nil || len(got) != len(before) {
		t.Fatalf("after the upgrade: %d hits (%v), before %d", len(got), err, len(before))
	}
	st, err := (&Builder{Store: store}).Build(captures, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Reindexed != len(captures) {
		t.Errorf("%d files re-read, want %d", st.Reindexed, len(captures))
	}
	if diff := firstDiff(answers(t, store), want); diff != "" {
		t.Errorf("after the build, unlike a fresh build: %s", diff)
	}
}

// TestUpgradeSchema3: an index of schema 3 could hold two catalog entries
// of one path (a build died between indexing a changed capture and
// deleting its old entry; readers then took the newest). Readers of schema
// 4 take every entry for current: they refuse a schema 3 index until a
// build or prune upgrades it, which removes the older entry; the build
// then equals a fresh one.
func TestUpgradeSchema3(t *testing.T) {
	dir := t.TempDir()
	captures := writeCaptures(t, dir, 0, 3, 64<<10)
	fresh := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	if _, err := (&Builder{Store: fresh}).Build(captures, nil); err != nil {
		t.Fatal(err)
	}
	want := answers(t, fresh)

	store := &index.Store{Dir: t.TempDir(), LockWait: 5 * time.Second}
	if _, err := (&Builder{Store: store}).Build(captures, nil); err != nil {
		t.Fatal(err)
	}
	files, err := store.Catalog()
	if err != nil || len(files) != 3 {
		t.Fatalf("catalog %v %v", files, err)
	}
	// The first capture's entry becomes an older entry of the last one's
	// path, with other hits: what a crash could leave.
	stale := files[0]
	stale.Path = files[2].Path
	if err := store.Update(stale); err != nil {
		t.Fatal(err)
	}
	// Schema 3 wrote catalog entries as JSON.
	entries := jsonEntries(t, store)
	func() {
		db, err := pebble.Open(filepath.Join(store.Dir, "db"), &pebble.Options{Logger: quietLog{}})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		b := db.NewBatch()
		for k, f := range entries {
			v, _ := json.Marshal(f)
			b.Set([]byte(k), v, nil)
		}
		b.Set([]byte("mschema"), []byte("3"), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}()
	if _, _, err := store.Lookup(everything, xff.AllHeaders); !errors.Is(err, index.ErrOldSchema) || !strings.Contains(err.Error(), "schema 3") {
		t.Fatalf("look-up in a schema 3 index: %v", err)
	}
	st, err := (&Builder{Store: store}).Build(captures, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.New != 1 || st.Unchanged != 2 {
		t.Errorf("build after the upgrade: %+v, want the first capture new, the others unchanged", st)
	}
	if diff := firstDiff(answers(t, store), want); diff != "" {
		t.Errorf("after the build, unlike a fresh build: %s", diff)
	}
}
