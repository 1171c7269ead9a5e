package ingest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/stream"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
)

// Options tune a build.
type Options struct {
	Workers   int   // parallel chunk walkers; 0 means one per CPU
	ChunkSize int64 // bytes per chunk; 0 means DefaultChunkSize
	Logger    *slog.Logger
	// NoWait makes a build fail with index.ErrBusy instead of waiting while
	// another build holds the index.
	NoWait bool
	// Prune drops the files that no longer exist from the index.
	Prune bool
	// Progress, if set, is called as the build advances (from the
	// building goroutine; keep it quick).
	Progress func(Progress)
}

// Progress is a build's position.
type Progress struct {
	File                 string
	FileDone, FileBytes  int64 // bytes of this file to read, and read so far
	TotalDone, TotalSize int64 // the same over the build (files to read only)
	Started              time.Time
}

// DefaultChunkSize balances parallelism on small files against per-chunk
// overhead (a resync and reading past the chunk's end).
const DefaultChunkSize = 16 << 20

// Action says what a build did with a file.
type Action string

const (
	ActionNew       Action = "new"       // indexed whole for the first time
	ActionGrown     Action = "grown"     // its new records were indexed
	ActionUnchanged Action = "unchanged" // nothing to do (one stat)
	ActionRenamed   Action = "renamed"   // known under another path: path updated, not rescanned
	ActionChanged   Action = "changed"   // its start changed: indexed again from scratch
	// ActionReindexed: indexed again from scratch, because an older xffidx
	// indexed it for fewer headers (X-Forwarded-For alone).
	ActionReindexed Action = "reindexed"
	ActionPruned    Action = "pruned" // no longer exists: dropped from the index
	ActionFailed    Action = "failed" // could not be indexed
)

// FileResult reports one file of a build.
type FileResult struct {
	Path    string
	Action  Action
	Renamed string // for a rename, the old path
	// Info is the catalog entry after the build; Delta counts what this
	// build added (Size: bytes read).
	Info, Delta index.FileInfo
	Warnings    []string
	// Err: the file could not be indexed, or is corrupt in places (then
	// Committed is true: every record around the corruption is indexed).
	Err       error
	Committed bool
}

// Stats sums a build.
type Stats struct {
	New, Grown, Unchanged, Renamed, Changed, Reindexed, Pruned, Failed int
	// Corrupt files were indexed with regions skipped.
	Corrupt                 int
	Bytes, Packets          int64 // read by this build
	XFFLines, OtherLines    int64
	ContLines               int64 // forwarding lines in segments that do not hold their request line
	Hits                    int64
	Addresses, NonAddresses int64
	SkippedBytes            int64
	// Connection tracking: retransmitted and reordered segments, gaps,
	// open header blocks given up, bounds reached.
	Dups, Early, Gaps, Evicted, Overflow int64
	Duration                             time.Duration
}

// Add folds one file's result in.
func (s *Stats) Add(r FileResult) {
	switch r.Action {
	case ActionNew:
		s.New++
	case ActionGrown:
		s.Grown++
	case ActionUnchanged:
		s.Unchanged++
	case ActionRenamed:
		s.Renamed++
	case ActionChanged:
		s.Changed++
	case ActionReindexed:
		s.Reindexed++
	case ActionPruned:
		s.Pruned++
	case ActionFailed:
		s.Failed++
	}
	if r.Committed && r.Err != nil {
		s.Corrupt++
	}
	d := r.Delta
	s.Bytes += d.Size
	s.Packets += d.Packets
	s.XFFLines += d.XFFLines
	s.OtherLines += d.OtherLines
	s.ContLines += d.ContLines
	s.Dups += d.Dups
	s.Early += d.Early
	s.Gaps += d.Gaps
	s.Evicted += d.Evicted
	s.Overflow += d.Overflow
	s.Hits += d.Hits
	s.Addresses += d.Addresses
	s.NonAddresses += d.NonAddresses
	s.SkippedBytes += d.SkippedBytes
}

// Builder indexes capture files into a store.
type Builder struct {
	Store *index.Store
	Opts  Options
}

func (b *Builder) logger() *slog.Logger {
	if b.Opts.Logger != nil {
		return b.Opts.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// session is one build: the catalog as the build goes, and progress.
type session struct {
	b       *Builder
	files   []index.FileInfo // current catalog entries
	claimed map[uint32]bool  // entries matched to a path seen by this build
	nextID  uint32           // the id the next file indexed from scratch gets
	// invalid holds the catalog entries that do not decode or validate,
	// by path (empty: the path is unknown): a build of the path indexes it
	// again, replacing the entry; prune removes it if the file is gone.
	invalid map[string][]index.InvalidEntry
	started time.Time
	total   int64 // bytes to read, for progress
	done    int64
}

// Build indexes every capture among paths: files, and directories walked
// recursively. In a directory, files that are not captures (by magic number)
// are passed over; a named file that is not a capture is an error. report is
// called for each file as it is done. The error is for the build as a
// whole: the index is busy (index.ErrBusy) or cannot be opened.
func (b *Builder) Build(paths []string, report func(FileResult)) (Stats, error) {
	return b.run(report, func(s *session, done func(FileResult)) {
		var captures []string
		for _, p := range paths {
			captures = append(captures, b.expand(p, done)...)
		}
		s.plan(captures)
		for _, c := range captures {
			done(s.indexFile(c))
		}
		if b.Opts.Prune {
			for _, r := range s.prune() {
				done(r)
			}
		}
	})
}

// IndexFile indexes one capture (an absolute path) as Build does.
func (b *Builder) IndexFile(path string) FileResult {
	r := FileResult{Path: path, Action: ActionFailed}
	_, err := b.run(nil, func(s *session, _ func(FileResult)) { r = s.indexFile(path) })
	if err != nil {
		r.Err = err
	}
	return r
}

// Prune drops the files that no longer exist from the index.
func (b *Builder) Prune(report func(FileResult)) (Stats, error) {
	return b.run(report, func(s *session, done func(FileResult)) {
		for _, r := range s.prune() {
			done(r)
		}
	})
}

// run holds the build lock and a session for work, which reports each file
// through done.
func (b *Builder) run(report func(FileResult), work func(s *session, done func(FileResult))) (Stats, error) {
	var st Stats
	unlock, err := b.Store.LockBuild(!b.Opts.NoWait)
	if err != nil {
		return st, err
	}
	defer unlock()
	if err := b.Store.Upgrade(b.logger()); err != nil {
		return st, err
	}
	s, err := b.newSession()
	if err != nil {
		return st, err
	}
	work(s, func(r FileResult) {
		st.Add(r)
		if report != nil {
			report(r)
		}
	})
	// Removed and replaced files leave their hit keys behind; once they
	// are a good share of the index, one scan removes them all.
	var live int64
	for _, f := range s.files {
		live += f.Addresses
	}
	if _, err := b.Store.Collect(live); err != nil {
		b.logger().Warn("removing the hits of removed files", "err", err)
	}
	st.Duration = time.Since(s.started)
	return st, nil
}

func (b *Builder) newSession() (*session, error) {
	s := &session{b: b, claimed: map[uint32]bool{}, started: time.Now(), nextID: 1}
	if !b.Store.Exists() {
		return s, nil
	}
	var err error
	if s.nextID, err = b.Store.NextID(); err != nil {
		return nil, err
	}
	files, err := b.Store.Catalog()
	if errors.Is(err, index.ErrNoIndex) {
		return s, nil // a first build died creating the database
	}
	var invalid index.InvalidEntries
	if errors.As(err, &invalid) {
		s.invalid = map[string][]index.InvalidEntry{}
		for _, e := range invalid {
			b.logger().Debug(e.Error())
			s.invalid[e.Path] = append(s.invalid[e.Path], e)
		}
	} else if err != nil {
		return nil, err
	}
	// One entry per path: a changed file's entry is replaced in the same
	// Ingest (schema 4; Store.Upgrade removed older leftovers).
	s.files = files
	return s, nil
}

// previous returns the capture that precedes path in a rotation, whose
// connections path may go on with: the indexed capture of the same
// directory whose last packet is the latest at or before path's first one
// (first, Unix ns), no longer ago than the tracker's idle timeout. nil if
// there is none or first is unknown.
func (s *session) previous(path string, first int64) *index.FileInfo {
	if first == 0 {
		return nil
	}
	dir := filepath.Dir(path)
	var best *index.FileInfo
	for i := range s.files {
		f := &s.files[i]
		if f.Path == path || filepath.Dir(f.Path) != dir || f.Tracking < index.TrackingVersion || f.LastTS.IsZero() {
			continue
		}
		last := f.LastTS.UnixNano()
		if last > first || first-last > int64(stream.DefaultIdleTimeout) {
			continue
		}
		if best == nil || f.LastTS.After(best.LastTS) {
			best = f
		}
	}
	return best
}

// plan sums the bytes the build will read, for progress.
func (s *session) plan(captures []string) {
	for _, c := range captures {
		if id, err := index.StatIdentity(c); err == nil {
			s.total += id.Size
		}
	}
}

// entryFor finds the catalog entry of path: by path, or, for a file moved
// here, by identity and fingerprint among entries whose path is gone.
func (s *session) entryFor(path string, id index.Identity) (f *index.FileInfo, renamedFrom string) {
	for i := range s.files {
		if s.files[i].Path == path {
			return &s.files[i], ""
		}
	}
	for i := range s.files {
		c := &s.files[i]
		if s.claimed[c.ID] || id.Size < c.Size {
			continue
		}
		if !id.SameFile(c) && !(id.Size == c.Size && id.ModTime.Equal(c.ModTime)) {
			continue
		}
		if old, err := index.StatIdentity(c.Path); err == nil && old.SameFile(c) {
			continue // the old path still holds that file: this is a copy
		}
		if index.SameStart(path, c) {
			return c, c.Path
		}
	}
	return nil, ""
}

func (s *session) indexFile(path string) FileResult {
	r := FileResult{Path: path, Action: ActionFailed}
	id, err := index.StatIdentity(path)
	if err != nil {
		r.Err = err
		return r
	}
	if bad := s.invalid[path]; len(bad) > 0 {
		// The entry cannot be trusted: index the file again, replacing it.
		delete(s.invalid, path)
		r = s.scan(path, id, &index.FileInfo{ID: bad[0].ID, Path: path}, true)
		r.Action = ActionChanged
		r.Warnings = append(r.Warnings, fmt.Sprintf("its catalog entry was invalid (%v): indexed again", bad[0].Reason))
		if !r.Committed {
			r.Action = ActionFailed
		}
		return r
	}
	entry, oldPath := s.entryFor(path, id)
	if entry != nil {
		s.claimed[entry.ID] = true
	}
	if oldPath != "" {
		moved := *entry
		moved.Path = path
		if err := s.b.Store.Update(moved); err != nil {
			r.Err = fmt.Errorf("%s: %w", path, err)
			return r
		}
		*entry = moved
		r.Renamed = oldPath
	}
	switch {
	case entry != nil && (entry.Headers != xff.AllHeaders || entry.Tracking < index.TrackingVersion):
		// Indexed by an older xffidx, for X-Forwarded-For alone or without
		// following connections: its old hits stay queryable until the
		// new ones replace them.
		r = s.scan(path, id, entry, true)
		r.Action = ActionReindexed
	case entry != nil && sameFileOrUnknown(id, entry) && id.Size == entry.Size && id.ModTime.Equal(entry.ModTime):
		r.Action, r.Info, r.Committed = ActionUnchanged, *entry, true
		if oldPath != "" {
			r.Action = ActionRenamed
		}
		s.progress(path, id.Size, id.Size, id.Size)
		return r
	case entry != nil && sameFileOrUnknown(id, entry) && id.Size > entry.Size && entry.ResumeAt >= entry.FingerprintFrom && index.SameStart(path, entry):
		r = s.scan(path, id, entry, false)
		if r.Action == ActionNew {
			r.Action = ActionGrown
		}
	case entry != nil:
		r = s.scan(path, id, entry, true)
		r.Action = ActionChanged
	default:
		r = s.scan(path, id, nil, true)
	}
	if oldPath != "" {
		r.Renamed = oldPath
	}
	if !r.Committed {
		r.Action = ActionFailed
	}
	return r
}

func sameFileOrUnknown(id index.Identity, f *index.FileInfo) bool {
	return f.Inode == 0 || id.SameFile(f)
}

// scan reads a file, whole (from scratch, replacing entry if any) or from
// entry.ResumeAt on, and commits its hits.
func (s *session) scan(path string, id index.Identity, entry *index.FileInfo, fromScratch bool) FileResult {
	r := FileResult{Path: path, Action: ActionNew}
	var fid uint32
	var replaces []index.FileInfo
	info := index.FileInfo{Path: path, Headers: xff.AllHeaders}
	if entry != nil && !fromScratch {
		fid, info = entry.ID, *entry
	} else {
		if entry != nil {
			replaces = []index.FileInfo{*entry}
		}
		fid = s.nextID
		if fid == 0 {
			r.Err = fmt.Errorf("%s: no file id left in the index", path)
			return r
		}
		s.nextID++
	}
	info.ID, info.Size, info.ModTime = fid, id.Size, id.ModTime
	info.Dev, info.Inode = uint64(id.Dev), uint64(id.Inode)
	f, err := os.Open(path)
	if err != nil {
		r.Err = err
		return r
	}
	defer f.Close()
	table, err := s.b.Store.NewTable(fid)
	if err != nil {
		r.Err = fmt.Errorf("%s: %w", path, err)
		return r
	}
	defer table.Discard()
	before := info
	fsc := &fileScan{b: s.b, s: s, f: f, path: path, size: id.Size, table: table, info: &info}
	if !fromScratch {
		fsc.resume = entry
	}
	t0 := time.Now()
	if err := fsc.run(); err != nil {
		r.Err = err
		return r
	}
	if fromScratch || info.Fingerprint == "" {
		info.FingerprintFrom = fsc.headerEnd
		info.FingerprintLen = min(64<<10, id.Size-fsc.headerEnd)
		if info.Fingerprint, err = index.Fingerprint(path, info.FingerprintFrom, info.FingerprintLen); err != nil {
			r.Err = fmt.Errorf("%s: %w", path, err)
			return r
		}
	}
	r.Warnings = fsc.warnings
	info.Addresses += table.Entries
	info.IndexedAt = time.Now().UTC()
	t1 := time.Now()
	tables, err := table.Finish(info, replaces...)
	t2 := time.Now()
	if err == nil {
		err = s.b.Store.Commit(tables)
	}
	s.b.logger().Debug("indexed", "file", path, "scan", t1.Sub(t0), "table", t2.Sub(t1), "commit", time.Since(t2))
	if err != nil {
		r.Err = fmt.Errorf("%s: %w", path, err)
		return r
	}
	if entry == nil || fromScratch {
		s.files = slices.DeleteFunc(s.files, func(f index.FileInfo) bool { return entry != nil && f.ID == entry.ID })
		s.files = append(s.files, info)
	} else {
		*entry = info
	}
	s.claimed[info.ID] = true
	r.Committed, r.Info = true, info
	r.Delta = index.FileInfo{
		Size: id.Size - fsc.dataStart, Packets: info.Packets - before.Packets, XFFLines: info.XFFLines - before.XFFLines, OtherLines: info.OtherLines - before.OtherLines,
		Hits: info.Hits - before.Hits, Addresses: info.Addresses - before.Addresses, NonAddresses: info.NonAddresses - before.NonAddresses,
		SkippedBytes: info.SkippedBytes - before.SkippedBytes,
		ContLines:    info.ContLines - before.ContLines, Requests: info.Requests - before.Requests,
		Dups: info.Dups - before.Dups, Early: info.Early - before.Early, Gaps: info.Gaps - before.Gaps,
		Evicted: info.Evicted - before.Evicted, Overflow: info.Overflow - before.Overflow,
	}
	if fromScratch {
		r.Delta.Size = id.Size
	}
	if r.Delta.SkippedBytes > 0 {
		r.Err = fmt.Errorf("%s: corrupt: %d bytes are not packet records and were skipped (see the warnings for where); every record around them is indexed", path, r.Delta.SkippedBytes)
	}
	return r
}

// progress reports a file's progress; fileDone bytes of fileBytes, of which
// delta are new since the last call.
func (s *session) progress(file string, fileDone, fileBytes, delta int64) {
	s.done += delta
	if s.b.Opts.Progress != nil {
		s.b.Opts.Progress(Progress{File: file, FileDone: fileDone, FileBytes: fileBytes, TotalDone: s.done, TotalSize: s.total, Started: s.started})
	}
}

// prune drops catalog entries whose file is gone.
func (s *session) prune() []FileResult {
	var out []FileResult
	var gone []index.FileInfo
	goneIDs := map[uint32]bool{}
	// Invalid entries whose file is gone, or whose path is unknown or not
	// one a build indexes (they can never be answered nor indexed again).
	for path, bad := range s.invalid {
		if filepath.IsAbs(path) && !strings.ContainsRune(path, 0) {
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				continue
			}
		}
		for _, e := range bad {
			name := path
			if name == "" {
				name = fmt.Sprintf("file %d of the index", e.ID)
			}
			gone = append(gone, index.FileInfo{ID: e.ID, Path: path})
			out = append(out, FileResult{Path: name, Action: ActionPruned, Info: index.FileInfo{ID: e.ID, Path: path}, Committed: true,
				Warnings: []string{fmt.Sprintf("its catalog entry was invalid (%v)", e.Reason)}})
		}
		delete(s.invalid, path)
	}
	for _, f := range s.files {
		if s.claimed[f.ID] {
			continue
		}
		if _, err := os.Stat(f.Path); errors.Is(err, fs.ErrNotExist) {
			gone = append(gone, f)
			goneIDs[f.ID] = true
			out = append(out, FileResult{Path: f.Path, Action: ActionPruned, Info: f, Committed: true})
		}
	}
	if err := s.b.Store.Delete(gone...); err != nil {
		return []FileResult{{Action: ActionFailed, Err: err}}
	}
	s.files = slices.DeleteFunc(s.files, func(f index.FileInfo) bool { return goneIDs[f.ID] })
	return out
}

// expand lists the captures named by path, in lexical order.
func (b *Builder) expand(path string, fail func(FileResult)) []string {
	failed := func(p string, err error) { fail(FileResult{Path: p, Action: ActionFailed, Err: err}) }
	abs, err := filepath.Abs(path)
	if err != nil {
		failed(path, err)
		return nil
	}
	fi, err := os.Stat(abs)
	if err != nil {
		failed(abs, err)
		return nil
	}
	if !fi.IsDir() {
		if err := checkMagic(abs); err != nil {
			failed(abs, err)
			return nil
		}
		return []string{abs}
	}
	var out []string
	err = filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			failed(p, err)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if err := checkMagic(p); err != nil {
			if errors.Is(err, format.ErrNotCapture) {
				b.logger().Debug("not a capture, passed over", "file", p)
			} else {
				failed(p, err)
			}
			return nil
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		failed(abs, err)
	}
	return out
}

func checkMagic(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 12)
	n, err := io.ReadFull(f, head)
	if err != nil && n == 0 {
		if err == io.EOF {
			return fmt.Errorf("%s: empty file: %w", path, format.ErrNotCapture)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	if format.Detect(head[:n]) == format.KindUnknown {
		return fmt.Errorf("%s: %w", path, format.ErrNotCapture)
	}
	return nil
}
