package index

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// ErrNoIndex says the index directory holds no index yet.
var ErrNoIndex = errors.New("no index here yet (run `xffidx build` first)")

// ErrCorrupt is matched (errors.Is) by the errors of an index whose files
// are damaged: a checksum that does not match, a MANIFEST cut short, a
// table or marker file missing.
var ErrCorrupt = errors.New("index is corrupt")

// ErrWriteFailed is matched by the errors of a write to the database that
// failed (a full disk, an I/O error): Pebble committed nothing of the
// operation, and the index keeps what was committed before it.
var ErrWriteFailed = errors.New("index could not be written")

// IndexError is an error of the index as a whole, not of one capture:
// Kind is ErrCorrupt or ErrWriteFailed. Err is Pebble's error (errors.Is
// sees through to it: syscall.ENOSPC, for instance).
type IndexError struct {
	Dir  string
	Kind error
	// What names the damaged file and what is wrong with it, or the write
	// that failed, on one line.
	What string
	Err  error
}

func (e *IndexError) Error() string {
	if e.Kind == ErrWriteFailed {
		return fmt.Sprintf("index %s could not be written (%s): the index keeps what was committed before; free space (or repair the file system) and run the command again", e.Dir, e.What)
	}
	return fmt.Sprintf("index %s is corrupt (%s): run `xffidx build --rebuild` to index the captures it lists into a new database (the damaged one is kept, moved aside), or delete %s and build again", e.Dir, e.What, e.Dir)
}

func (e *IndexError) Is(target error) bool { return target == e.Kind }
func (e *IndexError) Unwrap() error        { return e.Err }

// PermissionError says this user may not open the index (or not for
// writing).
type PermissionError struct {
	Dir string
	Err error
}

func (e *PermissionError) Error() string {
	what := e.Err.Error()
	if pe := (*fs.PathError)(nil); errors.As(e.Err, &pe) {
		what = pe.Op + " " + pe.Path
	}
	return fmt.Sprintf("index %s: permission denied (%s): an index is readable by its owner only, or also by its directory's group if the directory is set-group-ID (chmod g+s); only its owner may write it", e.Dir, what)
}

func (e *PermissionError) Unwrap() error { return e.Err }

func (s *Store) dbDir() string  { return filepath.Join(s.Dir, "db") }
func (s *Store) tmpDir() string { return filepath.Join(s.Dir, "tmp") }

// options are the Pebble options of the index; withDB adds, for each open,
// the logger, event listener and file system that tie Pebble's failures
// and the files it creates to this store.
func (s *Store) options(readOnly bool) *pebble.Options {
	o := &pebble.Options{
		ReadOnly: readOnly,
		// Only withDB's creation step, on an absent or empty directory,
		// makes a new database: anywhere else a missing database is damage
		// to report, never a reason to start afresh over the old files.
		ErrorIfNotExists:   true,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{},
		FS:                 s.fs(readOnly),
	}
	for i := range o.Levels {
		o.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.ZstdCompression }
	}
	return o
}

// withDB opens the database, runs fn and closes it, waiting up to LockWait
// while another process holds it. A writer creates the database if the
// index has none.
//
// Pebble reports what it cannot go on from (a MANIFEST write that failed
// half-way, on a full disk; a broken invariant) through its logger's
// Fatalf, from whichever goroutine met it, often one of its own (a flush, a
// compaction), where no recover can reach. So the database is used from a
// goroutine of its own; Fatalf records the failure and parks its goroutine
// for good, so that Pebble writes nothing more, and withDB returns the
// failure at once. The store then refuses every call: the parked database
// still holds its lock, and only the end of the process releases it.
func (s *Store) withDB(readOnly bool, fn func(db *pebble.DB) error) error {
	if e := s.failed.Load(); e != nil {
		return e
	}
	if readOnly {
		if !s.Exists() {
			return fmt.Errorf("%s: %w", s.Dir, ErrNoIndex)
		}
	} else {
		if err := s.prepareDirs(); err != nil {
			return err
		}
		if !s.Exists() {
			if err := s.create(); err != nil {
				return err
			}
		}
	}
	deadline := time.Now().Add(s.LockWait)
	delay := 5 * time.Millisecond
	for {
		opened, err := s.session(s.dbDir(), s.options(readOnly), fn)
		if opened || err == nil {
			return err
		}
		if errors.Is(err, pebble.ErrDBDoesNotExist) {
			// The directory holds files (Exists), but not the marker that
			// names the current MANIFEST.
			return &IndexError{Dir: s.Dir, Kind: ErrCorrupt, Err: err,
				What: "db/marker.manifest.* is missing: nothing says which MANIFEST lists the tables"}
		}
		if !isLockBusy(err) || time.Now().After(deadline) {
			return s.classify(fmt.Errorf("%s: opening index: %w", s.Dir, err))
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// session opens the database in dir with opts, runs fn (if not nil) and
// closes it, on a goroutine of its own (see withDB). opened says the open
// succeeded: err is then fn's or Close's, or a failure Pebble met.
func (s *Store) session(dir string, opts *pebble.Options, fn func(db *pebble.DB) error) (opened bool, err error) {
	w := &watch{fatal: make(chan struct{})}
	opts.Logger = pebbleLogger{w}
	opts.EventListener = &pebble.EventListener{
		// Pebble's default hands corruption to Fatalf; reported here, it
		// comes back as the error of the read that met it, and is noted in
		// case it was met in the background (a compaction).
		DataCorruption: w.noteCorruption,
	}
	type result struct {
		opened bool
		err    error
	}
	done := make(chan result, 1)
	go func() {
		t0 := s.Counts.now()
		db, err := pebble.Open(dir, opts)
		s.Counts.opening(t0)
		if err != nil {
			done <- result{false, err}
			return
		}
		if s.Counts != nil {
			s.Counts.Opens.Add(1)
		}
		var ferr error
		if fn != nil {
			ferr = fn(db)
		}
		t0 = s.Counts.now()
		cerr := db.Close()
		s.Counts.opening(t0)
		if ferr == nil && cerr != nil {
			ferr = fmt.Errorf("%s: closing index: %w", s.Dir, cerr)
		}
		done <- result{true, ferr}
	}()
	var r result
	select {
	case r = <-done:
	case <-w.fatal:
	}
	if f := w.fatalError(); f != nil {
		e := &IndexError{Dir: s.Dir, Kind: ErrCorrupt, What: oneLine(f.Error(), s.Dir), Err: f}
		if info := pebble.ExtractDataCorruptionInfo(f); info != nil {
			e = s.corruptError(info, info.Details)
		} else if isWriteFailure(f) || errors.Is(f, os.ErrPermission) {
			e.Kind = ErrWriteFailed
		}
		s.failed.CompareAndSwap(nil, e)
		return true, s.failed.Load()
	}
	if r.opened && r.err == nil {
		if info := w.corruption(); info != nil {
			return true, s.corruptError(info, info.Details)
		}
		return true, nil
	}
	if r.opened {
		return true, s.classify(r.err)
	}
	return false, r.err
}

// classify turns a Pebble error into an IndexError when it says the index
// is damaged or could not be written; other errors are returned as they are.
func (s *Store) classify(err error) error {
	var ie *IndexError
	switch {
	case err == nil || errors.As(err, &ie) || errors.Is(err, ErrNoIndex) || errors.Is(err, ErrOldSchema) || errors.Is(err, ErrBusy):
		return err
	case pebble.ExtractDataCorruptionInfo(err) != nil:
		info := pebble.ExtractDataCorruptionInfo(err)
		return s.corruptError(info, info.Details)
	case isWriteFailure(err):
		return &IndexError{Dir: s.Dir, Kind: ErrWriteFailed, What: oneLine(err.Error(), s.Dir), Err: err}
	case errors.Is(err, os.ErrPermission):
		return &PermissionError{Dir: s.Dir, Err: err}
	case pebble.IsCorruptionError(err), isDamage(err), errors.As(err, new(*stoppedError)):
		return &IndexError{Dir: s.Dir, Kind: ErrCorrupt, What: oneLine(err.Error(), s.Dir), Err: err}
	}
	return err
}

func (s *Store) corruptError(info *pebble.DataCorruptionInfo, details error) *IndexError {
	what := "corrupt data"
	if details != nil {
		what = oneLine(details.Error(), s.Dir)
	}
	return &IndexError{Dir: s.Dir, Kind: ErrCorrupt, What: filepath.Base(info.Path) + ": " + what, Err: details}
}

// isWriteFailure reports whether err comes from a write the file system
// refused.
func isWriteFailure(err error) bool {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG, syscall.EIO, syscall.EROFS} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// isDamage reports whether an error of Pebble's says a file of the database
// is missing or unreadable as a database file, where Pebble does not mark
// it as corruption (a MANIFEST cut short, a table that is gone).
func isDamage(err error) bool {
	msg := err.Error()
	for _, s := range []string{"malformed manifest", "could not open manifest", "error when loading manifest", "unknown to the objstorage provider", "object size mismatch", "checksum mismatch"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// oneLine makes a Pebble error fit one line of a message that already
// names the index directory: its detail carriers and line breaks go, and
// so does a repetition of the directory prefix.
func oneLine(msg, dir string) string {
	msg = strings.ReplaceAll(msg, "<corruption detail carrier>", "")
	msg = strings.Join(strings.Fields(msg), " ")
	return strings.TrimPrefix(msg, dir+": ")
}

// watch follows one open of the database: the failure Pebble stopped on,
// and corruption met in the background.
type watch struct {
	once  sync.Once
	fatal chan struct{} // closed when Pebble called Fatalf
	err   error

	mu      sync.Mutex
	corrupt *pebble.DataCorruptionInfo
}

func (w *watch) fail(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.fatal)
	})
}

func (w *watch) fatalError() error {
	select {
	case <-w.fatal:
		return w.err
	default:
		return nil
	}
}

func (w *watch) noteCorruption(info pebble.DataCorruptionInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.corrupt == nil {
		w.corrupt = &info
	}
}

func (w *watch) corruption() *pebble.DataCorruptionInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.corrupt
}

// pebbleLogger keeps Pebble's informational logging quiet and turns its
// Fatalf into a failure of the open it belongs to (see withDB).
type pebbleLogger struct{ w *watch }

func (pebbleLogger) Infof(string, ...interface{})  {}
func (pebbleLogger) Errorf(string, ...interface{}) {}

// Fatalf records the failure and never returns: Pebble's state no longer
// matches its files, and going on (or unwinding through code that holds its
// locks) could write a MANIFEST that loses committed data.
func (l pebbleLogger) Fatalf(format string, args ...interface{}) {
	err := &stoppedError{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if e, ok := a.(error); ok {
			err.err = e // for errors.Is (ENOSPC)
			break
		}
	}
	if l.w == nil {
		// Outside an open (a table writer's options): nothing to hand the
		// failure to.
		panic(err)
	}
	l.w.fail(err)
	select {}
}

// stoppedError is a failure Pebble stopped on (Fatalf).
type stoppedError struct {
	msg string
	err error // Pebble's error among Fatalf's arguments, if any
}

func (e *stoppedError) Error() string { return e.msg }
func (e *stoppedError) Unwrap() error { return e.err }

func isLockBusy(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) ||
		strings.Contains(err.Error(), "resource temporarily unavailable") ||
		strings.Contains(err.Error(), "lock held by current process")
}

// create makes a new, empty database for the index, atomically: it is made
// in a scratch directory and renamed into place, so that the database
// directory either does not exist or holds a whole database (a build killed
// while creating it leaves a scratch directory, which the next build
// removes: LockBuild). It replaces an empty directory only.
func (s *Store) create() error {
	tmp, err := os.MkdirTemp(s.Dir, newDBPrefix)
	if err != nil {
		return fmt.Errorf("%s: creating index: %w", s.Dir, err)
	}
	defer os.RemoveAll(tmp)
	if err := s.modes().applyDir(tmp); err != nil {
		return fmt.Errorf("%s: creating index: %w", s.Dir, err)
	}
	opts := s.options(false)
	opts.ErrorIfNotExists = false
	if _, err := s.session(tmp, opts, nil); err != nil {
		if errors.As(err, new(*IndexError)) {
			return err
		}
		return s.classify(fmt.Errorf("%s: creating index: %w", s.Dir, err))
	}
	// Remove fails on a directory that is not empty: only an empty one is
	// replaced.
	if err := os.Remove(s.dbDir()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: creating index: %w", s.Dir, err)
	}
	if err := os.Rename(tmp, s.dbDir()); err != nil {
		return fmt.Errorf("%s: creating index: %w", s.Dir, err)
	}
	return syncDir(s.Dir)
}

// newDBPrefix names the scratch directories of create.
const newDBPrefix = "db.new-"

// Exists reports whether the index has a database: its directory exists
// and holds files. (A damaged database exists too, and so does one this
// user may not read: opening it says what is wrong.)
func (s *Store) Exists() bool {
	d, err := os.Open(s.dbDir())
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	defer d.Close()
	names, _ := d.Readdirnames(1)
	return len(names) > 0
}

// SetAside moves the database out of the way, to DIR/db.damaged-TIME, so
// that the next write starts a new one; it is kept, never deleted. The
// caller holds the build lock; queries are waited for (up to LockWait), as
// a writer waits for them. It returns the new path of the old database, ""
// if there was none.
func (s *Store) SetAside() (string, error) {
	if _, err := os.Stat(s.dbDir()); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	aside := filepath.Join(s.Dir, "db.damaged-"+time.Now().UTC().Format("20060102T150405Z"))
	for i := 2; ; i++ {
		if _, err := os.Lstat(aside); errors.Is(err, os.ErrNotExist) {
			break
		}
		aside = filepath.Join(s.Dir, fmt.Sprintf("db.damaged-%s-%d", time.Now().UTC().Format("20060102T150405Z"), i))
	}
	deadline := time.Now().Add(s.LockWait)
	for {
		lock, err := pebble.LockDirectory(s.dbDir(), s.fs(false))
		if err == nil {
			err = os.Rename(s.dbDir(), aside)
			lock.Close()
			if err != nil {
				return "", fmt.Errorf("%s: setting the database aside: %w", s.Dir, err)
			}
			return aside, syncDir(s.Dir)
		}
		if !isLockBusy(err) || time.Now().After(deadline) {
			return "", fmt.Errorf("%s: setting the database aside: %w", s.Dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}
