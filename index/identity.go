package index

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/xffidx/xffidx/format"
)

// Identity is what a stat says about a file.
type Identity struct {
	Size, Dev, Inode int64
	ModTime          time.Time
}

// StatIdentity stats path.
func StatIdentity(path string) (Identity, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Identity{}, err
	}
	id := Identity{Size: fi.Size(), ModTime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Dev, id.Inode = int64(st.Dev), int64(st.Ino)
	}
	return id, nil
}

// SameFile reports whether id is the file (device and inode) f was.
func (id Identity) SameFile(f *FileInfo) bool {
	return f.Inode != 0 && uint64(id.Dev) == f.Dev && uint64(id.Inode) == f.Inode
}

// Fingerprint hashes n bytes of path from offset from.
func Fingerprint(path string, from, n int64) (string, error) {
	f, err := format.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, from, n)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// SameStart reports whether the file at path starts as f did.
func SameStart(path string, f *FileInfo) bool {
	if f.Fingerprint == "" {
		return false
	}
	fp, err := Fingerprint(path, f.FingerprintFrom, f.FingerprintLen)
	return err == nil && fp == f.Fingerprint
}

// FileState says how a capture on disk relates to its catalog entry.
type FileState string

const (
	StateOK      FileState = "ok"
	StateGrown   FileState = "grown"   // records were appended since the build
	StateChanged FileState = "changed" // not the file that was indexed
	StateMissing FileState = "missing"
)

// State compares the file at f.Path with its catalog entry.
func State(f *FileInfo) FileState {
	id, err := StatIdentity(f.Path)
	if err != nil {
		return StateMissing
	}
	switch {
	case f.Inode != 0 && !id.SameFile(f):
		return StateChanged
	case id.Size == f.Size && id.ModTime.Equal(f.ModTime):
		return StateOK
	case id.Size > f.Size && SameStart(f.Path, f):
		return StateGrown
	}
	return StateChanged
}
