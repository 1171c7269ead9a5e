package index

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// fileModes are the permissions of what the index creates. The index maps
// client addresses to captures and holds raw header values: it is private
// to its owner (0700 directories, 0600 files), whatever the umask, unless
// its directory is set-group-ID: then the directory's group may read it
// (2750, 0640), to query it, and not write it. The setgid bit is the
// operator's standing choice, kept by the directory itself, where a flag
// would have to be given to every build (and one build without it would
// make new tables the group cannot read); Linux also gives new files and
// directories under it that group.
type fileModes struct {
	dir, file os.FileMode
	gid       int // the group of a shared index, -1 for a private one
}

func (s *Store) modes() fileModes {
	fi, err := os.Stat(s.Dir)
	if err == nil && fi.Mode()&os.ModeSetgid != 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			return fileModes{dir: 0o750 | os.ModeSetgid, file: 0o640, gid: int(st.Gid)}
		}
	}
	return fileModes{dir: 0o700, file: 0o600, gid: -1}
}

// applyDir gives a directory of the index its mode and group.
func (m fileModes) applyDir(dir string) error {
	if m.gid >= 0 {
		if err := os.Lchown(dir, -1, m.gid); err != nil {
			return err
		}
	}
	return os.Chmod(dir, m.dir)
}

// prepareDirs makes the index directory if need be (0700: umask can only
// take bits away) and gives the database directory the index's mode, before
// a write: a database made by an older xffidx, as the umask left it, is
// closed to others from the next build on.
func (s *Store) prepareDirs() error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("%s: %w", s.Dir, err)
	}
	m := s.modes()
	fi, err := os.Stat(s.dbDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s.Dir, err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&(os.ModePerm|os.ModeSetgid) == m.dir && (m.gid < 0 || st == nil || int(st.Gid) == m.gid) {
		return nil
	}
	if err := m.applyDir(s.dbDir()); err != nil {
		return fmt.Errorf("%s: %w", s.Dir, err)
	}
	return nil
}

// fs is the file system Pebble uses for the index (see indexFS).
func (s *Store) fs(readOnly bool) vfs.FS {
	return indexFS{FS: vfs.Default, modes: s.modes(), readOnly: readOnly}
}

// indexFS is vfs.Default with two changes. Every file Pebble creates gets
// the index's file mode, whatever the umask. And its directory lock is a
// flock on LOCK, exclusive for a writer, shared for a reader, which opens
// the file read-only: queries need no write access to the index, and run
// side by side. (Pebble's own lock, an fcntl write lock, needs LOCK open for
// writing; writers take it too, so that an older xffidx, which takes only
// that, still excludes them.)
type indexFS struct {
	vfs.FS
	modes    fileModes
	readOnly bool
}

func (f indexFS) chmod(file vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return file, err
	}
	if fd := file.Fd(); fd != vfs.InvalidFd {
		if err := syscall.Fchmod(int(fd), uint32(f.modes.file)); err != nil {
			file.Close()
			return nil, err
		}
	}
	return file, nil
}

func (f indexFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return f.chmod(f.FS.Create(name, category))
}

func (f indexFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return f.chmod(f.FS.OpenReadWrite(name, category, opts...))
}

func (f indexFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return f.chmod(f.FS.ReuseForWrite(oldname, newname, category))
}

// Link gives the file its mode too: a table ingested is linked in from the
// build's scratch directory.
func (f indexFS) Link(oldname, newname string) error {
	if err := f.FS.Link(oldname, newname); err != nil {
		return err
	}
	return os.Chmod(newname, f.modes.file)
}

func (f indexFS) MkdirAll(dir string, perm os.FileMode) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := f.FS.MkdirAll(dir, f.modes.dir.Perm()); err != nil {
		return err
	}
	return f.modes.applyDir(dir)
}

func (f indexFS) Lock(name string) (io.Closer, error) {
	flag, how := os.O_RDWR|os.O_CREATE, syscall.LOCK_EX
	if f.readOnly {
		flag, how = os.O_RDONLY, syscall.LOCK_SH
	}
	file, err := os.OpenFile(name, flag|syscall.O_CLOEXEC, f.modes.file)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(file.Fd()), how|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		file.Close()
		return nil, &os.PathError{Op: "flock", Path: name, Err: err}
	}
	if f.readOnly {
		return file, nil
	}
	// Readers open LOCK: it needs the index's file mode, not the umask's.
	// (A LOCK of another owner's keeps its mode: not ours to change.)
	if err := file.Chmod(f.modes.file); err != nil && !errors.Is(err, os.ErrPermission) {
		file.Close()
		return nil, err
	}
	legacy, err := f.FS.Lock(name)
	if err != nil {
		file.Close()
		return nil, err
	}
	return lockPair{legacy, file}, nil
}

type lockPair struct{ fcntl, flock io.Closer }

func (l lockPair) Close() error {
	return errors.Join(l.fcntl.Close(), l.flock.Close())
}
