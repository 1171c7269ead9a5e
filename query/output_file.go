package query

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/xffidx/xffidx/index"
)

// outputFile is a capture being written for --write. It is written to a
// temporary file in the output's directory (created 0600: it holds what
// the captures hold) and renamed over the output only once complete, so a
// capture being read is never truncated by the writing, an interrupted
// write leaves no half-written output, and a symbolic link at the output's
// name is never followed.
type outputFile struct {
	*os.File
	path  string
	force bool
	files []index.FileInfo
	done  bool
}

// createOutput checks that path may receive the output (see checkOutput)
// and opens the temporary file it will be renamed from.
func createOutput(path string, files []index.FileInfo, force bool) (*outputFile, error) {
	if err := checkOutput(path, files, force); err != nil {
		return nil, err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".xffidx-*")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &outputFile{File: f, path: path, force: force, files: files}, nil
}

// checkOutput refuses an output path that is a capture in the index (same
// device and inode as one, by the catalog's record of it or by a stat of
// its path now: even with force, a capture is evidence), a symbolic link
// (the output would land wherever it points), anything but a regular file,
// or an existing file without force.
func checkOutput(path string, files []index.FileInfo, force bool) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s: is a symbolic link; --write does not follow links (name the file itself)", path)
	case !st.Mode().IsRegular():
		return fmt.Errorf("%s: exists and is not a regular file", path)
	}
	id, err := index.StatIdentity(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for i := range files {
		f := &files[i]
		same := id.SameFile(f)
		if !same {
			if cst, err := os.Stat(f.Path); err == nil {
				same = os.SameFile(st, cst)
			}
		}
		if same {
			return fmt.Errorf("%s: is the indexed capture %s; --write never replaces a capture, not even with --force", path, f.Path)
		}
	}
	if !force {
		return fmt.Errorf("%s: already exists; --force replaces it", path)
	}
	return nil
}

// commit makes the written file the output: synced, then renamed into
// place. Without force it does not replace a file that appeared meanwhile
// (a hard link fails where the name exists); with force it checks the
// output again, right before the rename.
func (o *outputFile) commit() error {
	tmp := o.Name()
	if err := o.Sync(); err != nil {
		o.abort()
		return fmt.Errorf("%s: %w", o.path, err)
	}
	if err := o.Close(); err != nil {
		o.abort()
		return fmt.Errorf("%s: %w", o.path, err)
	}
	var err error
	if o.force {
		if err = checkOutput(o.path, o.files, true); err == nil {
			err = os.Rename(tmp, o.path)
		}
	} else {
		err = renameNoReplace(tmp, o.path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	o.done = true
	return nil
}

// abort removes the temporary file (a no-op after commit).
func (o *outputFile) abort() {
	if o.done {
		return
	}
	o.done = true
	o.Close()
	os.Remove(o.Name())
}

// renameNoReplace renames tmp to path unless path exists: a hard link is
// made and tmp removed, so that a file created at path in the meantime is
// never replaced. A file system without hard links falls back to a check
// and a rename.
func renameNoReplace(tmp, path string) error {
	err := os.Link(tmp, path)
	switch {
	case err == nil:
		return os.Remove(tmp)
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%s: already exists; --force replaces it", path)
	}
	if _, lerr := os.Lstat(path); !errors.Is(lerr, fs.ErrNotExist) {
		return fmt.Errorf("%s: already exists; --force replaces it", path)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
