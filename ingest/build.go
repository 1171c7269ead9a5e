package ingest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/compressed"
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
	// SeekSpacing is the uncompressed distance between the restart points
	// stored inside one deflate stream (0: compressed.DefaultSpacing).
	SeekSpacing int64
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

// fileWorkers is how many compressed captures a build walks at once.
func (b *Builder) fileWorkers() int {
	if b.Opts.Workers > 0 {
		return b.Opts.Workers
	}
	return runtime.GOMAXPROCS(0)
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
	stop    error // the index failed as a whole: the build ends with it
	// refreshed holds unchanged files' entries with their status change
	// time updated, written once at the end.
	refreshed []index.FileInfo

	// A build walking several captures at once (files.go): mu guards the
	// session and the Store; turn is the capture holding mu, turns all of
	// them in build order. pmu guards the progress count.
	mu    sync.Mutex
	turn  *fileTurn
	turns []*fileTurn
	pmu   sync.Mutex
	// frames bounds the decoded zstd and lz4 frames held ahead of their
	// reading, over the captures walked at once; atOnce is how many
	// captures are walked at once (0 or 1: one).
	frames *compressed.FrameBudget
	atOnce int
}

// Build indexes every capture among paths: files, and directories walked
// recursively. In a directory, files that are not captures (by magic number)
// are passed over; a named file that is not a capture is an error. report is
// called for each file as it is done. The error is for the build as a
// whole: the index is busy (index.ErrBusy) or cannot be opened.
func (b *Builder) Build(paths []string, report func(FileResult)) (Stats, error) {
	return b.run(report, func(s *session, done func(FileResult)) {
		var captures []string
		var notCaptures []notCapture
		for _, p := range paths {
			captures = append(captures, b.expand(p, done, func(nc notCapture) {
				notCaptures = append(notCaptures, nc)
			})...)
		}
		for _, r := range s.dropNotCaptures(notCaptures) {
			done(r)
		}
		s.indexAll(captures, done)
		if b.Opts.Prune {
			s.pruneGone(done)
		}
	})
}

// Rebuild indexes again, into a new database, the captures the index's
// catalog lists and those among paths, after moving the current database
// aside (DIR/db.damaged-TIME, kept for the user to look at or delete): the
// way out of a corrupt index. Listed captures that no longer exist count as
// pruned. If the catalog cannot be read, paths must name the captures, and
// without them nothing is moved. aside is where the old database went (""
// if there was none).
func (b *Builder) Rebuild(paths []string, report func(FileResult)) (st Stats, aside string, err error) {
	unlock, err := b.Store.LockBuild(!b.Opts.NoWait)
	if err != nil {
		return st, "", err
	}
	defer unlock()
	var listed []string
	if b.Store.Exists() {
		files, err := b.Store.Catalog()
		var invalid index.InvalidEntries
		if errors.As(err, &invalid) {
			// The valid entries are listed; an invalid one's path, where
			// it has one, is indexed again too.
			for _, e := range invalid {
				if filepath.IsAbs(e.Path) {
					files = append(files, index.FileInfo{Path: e.Path})
				}
			}
			err = nil
		}
		if err != nil {
			cause := err.Error()
			var ie *index.IndexError
			if errors.As(err, &ie) {
				cause = ie.What
			}
			if len(paths) == 0 {
				return st, "", fmt.Errorf("index %s: the list of indexed captures cannot be read (%s): name the captures to index: xffidx build --rebuild PATH... (nothing was changed)", b.Store.Dir, cause)
			}
			b.logger().Warn("the list of indexed captures cannot be read: indexing the paths given only", "index", b.Store.Dir, "cause", cause)
		}
		for _, f := range files {
			listed = append(listed, f.Path)
		}
	}
	if aside, err = b.Store.SetAside(); err != nil {
		return st, "", err
	}
	st, err = b.locked(report, func(s *session, done func(FileResult)) {
		seen := map[string]bool{}
		var captures []string
		add := func(c string) {
			if !seen[c] {
				seen[c] = true
				captures = append(captures, c)
			}
		}
		var notCaptures []notCapture
		skip := func(nc notCapture) { notCaptures = append(notCaptures, nc) }
		wasListed := map[string]bool{}
		for _, p := range listed {
			if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
				done(FileResult{Path: p, Action: ActionPruned, Committed: true})
				continue
			}
			wasListed[p] = true
			for _, c := range b.expand(p, done, skip) {
				add(c)
			}
		}
		for _, p := range paths {
			for _, c := range b.expand(p, done, skip) {
				add(c)
			}
		}
		// A listed file that is no longer a capture leaves the index as
		// a build would drop it; the new database never had its entry.
		notCaptures = slices.DeleteFunc(notCaptures, func(nc notCapture) bool {
			if !wasListed[nc.path] {
				return false
			}
			why := strings.TrimPrefix(nc.err.Error(), nc.path+": ")
			done(FileResult{Path: nc.path, Action: ActionPruned, Committed: true, Warnings: []string{
				fmt.Sprintf("no longer a capture (%s): left out of the rebuilt index", why),
			}})
			return true
		})
		for _, r := range s.dropNotCaptures(notCaptures) {
			done(r)
		}
		s.indexAll(captures, done)
	})
	return st, aside, err
}

// indexAll indexes captures in order, stopping at a failure of the index
// itself (it is corrupt, or cannot be written): the next file would meet it
// too.
func (s *session) indexAll(captures []string, done func(FileResult)) {
	s.plan(captures)
	if par := s.b.fileWorkers(); par > 1 && len(captures) > 1 {
		s.indexAtOnce(captures, par, done)
		return
	}
	for _, c := range captures {
		r := s.indexFile(c)
		if s.halted(r) {
			return
		}
		done(r)
	}
}

func (s *session) pruneGone(done func(FileResult)) {
	for _, r := range s.prune() {
		if s.halted(r) {
			return
		}
		done(r)
	}
}

// halted records a failure of the index as a whole in r (it is corrupt,
// cannot be written, or this user may not write it), which then ends the
// build with it, and reports whether there was one.
func (s *session) halted(r FileResult) bool {
	var ie *index.IndexError
	var pe *index.PermissionError
	switch {
	case s.stop != nil:
	case errors.As(r.Err, &ie):
		s.stop = ie
	case errors.As(r.Err, &pe):
		s.stop = pe
	}
	return s.stop != nil
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
		s.pruneGone(done)
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
	return b.locked(report, work)
}

// locked is run's work, once the build lock is held. The error is the
// build's: the index could not be opened, or failed as a whole (a file's
// own failure is in its FileResult).
func (b *Builder) locked(report func(FileResult), work func(s *session, done func(FileResult))) (Stats, error) {
	var st Stats
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
	if len(s.refreshed) > 0 && s.stop == nil {
		if err := b.Store.Update(s.refreshed...); err != nil {
			// Costs the next runs a hash of those files' starts, nothing else.
			b.logger().Warn("could not record the status change time of unchanged files", "files", len(s.refreshed), "err", err)
		}
	}
	// Removed and replaced files leave their hit keys behind; once they
	// are a good share of the index, one scan removes them all.
	var live int64
	for _, f := range s.files {
		live += f.Addresses
	}
	// When the index failed as a whole, nothing more is written to it.
	if s.stop == nil {
		if _, err := b.Store.Collect(live); err != nil {
			b.logger().Warn("removing the hits of removed files", "err", err)
		}
	}
	st.Duration = time.Since(s.started)
	return st, s.stop
}

func (b *Builder) newSession() (*session, error) {
	s := &session{b: b, claimed: map[uint32]bool{}, started: time.Now(), nextID: 1, frames: compressed.NewFrameBudget(0)}
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
	if containerOf(path) != "" {
		return s.compressedEntryFor(path, id)
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
	if entry != nil && s.turn != nil {
		// Walked beside other captures: decide as a build of one file
		// after the other would, once those before it are done (see
		// waitEarlier), with the catalog as they leave it.
		if err := s.waitEarlier(); err != nil {
			r.Err = err
			return r
		}
		entry, oldPath = s.entryFor(path, id)
	}
	if entry != nil {
		s.claimed[entry.ID] = true
		if s.turn != nil {
			s.turn.replaces = true
		}
	}
	if oldPath != "" {
		// The entry moves here.
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
	case entry != nil && containerOf(path) != entry.Container:
		// Compressed (or decompressed) since it was indexed: logrotate's
		// rename, then gzip.
		r = s.recompressed(path, id, entry)
	case entry != nil && id.Unchanged(path, entry):
		if !id.CTime.Equal(entry.CTime) {
			// Its start hashed the same (a chmod, a rename, an entry
			// from an older xffidx): recorded, the next stat settles it
			// alone.
			entry.CTime = id.CTime
			s.refreshed = append(s.refreshed, *entry)
		}
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
	info.Dev, info.Inode, info.CTime = uint64(id.Dev), uint64(id.Inode), id.CTime
	f, err := format.Open(path)
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
	if err := fsc.openContainer(id.Size); err != nil {
		r.Err = err
		return r
	}
	t0 := time.Now()
	if err := s.walkUnlocked(fsc); err != nil {
		r.Err = err
		return r
	}
	if fsc.codec != compressed.None {
		info.Container, info.DataSize = fsc.codec.String(), fsc.size
		s.b.logger().Debug("decompressed", "file", path, "container", info.Container, "compressed", id.Size, "uncompressed", fsc.size-fsc.dataStart, "decoded", fsc.cfile.Decoded, "restart_points", fsc.points, "restart_point_bytes", fsc.pointBytes)
	}
	if fromScratch || info.Fingerprint == "" {
		info.FingerprintFrom = fsc.headerEnd
		info.FingerprintLen = min(64<<10, fsc.size-fsc.headerEnd)
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
	if fsc.codec != compressed.None && !fromScratch {
		r.Delta.Size = id.Size - entry.Size // compressed bytes: the disk's
	}
	if r.Delta.SkippedBytes > 0 {
		r.Err = fmt.Errorf("%s: corrupt: %d bytes are not packet records and were skipped (see the warnings for where); every record around them is indexed", path, r.Delta.SkippedBytes)
	}
	if fsc.trailingErr != nil {
		r.Err = errors.Join(r.Err, fsc.trailingErr)
	}
	return r
}

// progress reports a file's progress; fileDone bytes of fileBytes, of which
// delta are new since the last call.
func (s *session) progress(file string, fileDone, fileBytes, delta int64) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	s.done += delta
	if s.b.Opts.Progress != nil {
		s.b.Opts.Progress(Progress{File: file, FileDone: fileDone, FileBytes: fileBytes, TotalDone: s.done, TotalSize: s.total, Started: s.started})
	}
}

// prune drops catalog entries whose file is gone, or holds no capture any
// more.
func (s *session) prune() []FileResult {
	var out []FileResult
	var notCaptures []notCapture
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
		id, err := index.StatIdentity(f.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			gone = append(gone, f)
			goneIDs[f.ID] = true
			out = append(out, FileResult{Path: f.Path, Action: ActionPruned, Info: f, Committed: true})
		case err == nil && id.Size != f.Size:
			// A file of the size indexed still starts as a capture did
			// (the build checked); only one whose size changed may not.
			if err := checkMagic(f.Path); isNotCapture(err) {
				notCaptures = append(notCaptures, notCapture{path: f.Path, err: err})
			}
		}
	}
	if err := s.b.Store.Delete(gone...); err != nil {
		return []FileResult{{Action: ActionFailed, Err: err}}
	}
	s.files = slices.DeleteFunc(s.files, func(f index.FileInfo) bool { return goneIDs[f.ID] })
	return append(out, s.dropNotCaptures(notCaptures)...)
}

// notCapture is a path that was expected to hold a capture and does not:
// err says why (format.ErrNotCapture or format.ErrNotRegular).
type notCapture struct {
	path  string
	err   error
	named bool // named on the command line, not found in a directory
}

func isNotCapture(err error) bool {
	return errors.Is(err, format.ErrNotCapture) || errors.Is(err, format.ErrNotRegular)
}

// dropNotCaptures drops the catalog entries of paths that hold no capture
// any more (emptied, overwritten with something else, replaced by a FIFO):
// their hits point at bytes that are gone, and a query would report the
// file as changed on every run until the entry went. A named path the
// index does not know is a failure, as any file that is not a capture; one
// met in a directory is passed over.
func (s *session) dropNotCaptures(ncs []notCapture) []FileResult {
	var out []FileResult
	var drop []index.FileInfo
	for _, nc := range ncs {
		i := slices.IndexFunc(s.files, func(f index.FileInfo) bool { return f.Path == nc.path && !s.claimed[f.ID] })
		switch {
		case i >= 0:
			f := s.files[i]
			drop = append(drop, f)
			why := strings.TrimPrefix(nc.err.Error(), nc.path+": ")
			out = append(out, FileResult{Path: f.Path, Action: ActionPruned, Info: f, Committed: true, Warnings: []string{
				fmt.Sprintf("no longer a capture (%s): its entry and the %d hits it was indexed with are dropped from the index", why, f.Hits),
			}})
		case nc.named:
			out = append(out, FileResult{Path: nc.path, Action: ActionFailed, Err: nc.err})
		default:
			s.b.logger().Debug("not a capture, passed over", "file", nc.path, "why", nc.err)
		}
	}
	if len(drop) == 0 {
		return out
	}
	if err := s.b.Store.Delete(drop...); err != nil {
		return []FileResult{{Action: ActionFailed, Err: err}}
	}
	s.files = slices.DeleteFunc(s.files, func(f index.FileInfo) bool {
		return slices.ContainsFunc(drop, func(d index.FileInfo) bool { return d.ID == f.ID })
	})
	return out
}

// expand lists the captures named by path, in lexical order, and passes
// the files that are not captures to skip.
func (b *Builder) expand(path string, fail func(FileResult), skip func(notCapture)) []string {
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
		switch err := checkMagic(abs); {
		case isNotCapture(err):
			skip(notCapture{path: abs, err: err, named: true})
			return nil
		case err != nil:
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
		if d.IsDir() || d.Type()&fs.ModeSymlink != 0 {
			return nil // symbolic links in a directory are not followed
		}
		if err := checkMagic(p); err != nil {
			if isNotCapture(err) {
				skip(notCapture{path: p, err: err})
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
	f, err := format.Open(path)
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
	if codec := compressed.Detect(head[:n]); codec != compressed.None {
		// What is inside decides: a compressed log is not a capture.
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		inner := make([]byte, 12)
		k, err := compressed.NewFile(f, st.Size(), codec, nil, compressed.Options{}).ReadAt(inner, 0)
		if format.Detect(inner[:k]) == format.KindUnknown {
			if k < 4 && err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("%s: %s-compressed, and its start does not decompress (%v): %w", path, codec, err, format.ErrNotCapture)
			}
			return fmt.Errorf("%s: %s-compressed, but what it holds is %w", path, codec, format.ErrNotCapture)
		}
		return nil
	}
	if format.Detect(head[:n]) == format.KindUnknown {
		return fmt.Errorf("%s: %w", path, format.ErrNotCapture)
	}
	return nil
}
