package index

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/compressed"
)

// Identity is what a stat says about a file.
type Identity struct {
	Size, Dev, Inode int64
	ModTime          time.Time
	// CTime is the inode's status change time: every write moves it, and
	// unlike the modification time no one can set it back (`touch -r`).
	CTime time.Time
}

// StatIdentity stats path.
func StatIdentity(path string) (Identity, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Identity{}, err
	}
	return IdentityOf(fi), nil
}

// IdentityOf returns what fi says about its file.
func IdentityOf(fi os.FileInfo) Identity {
	id := Identity{Size: fi.Size(), ModTime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Dev, id.Inode = int64(st.Dev), int64(st.Ino)
		id.CTime = time.Unix(st.Ctim.Unix())
	}
	return id
}

// Unchanged reports whether the file at path, which stats as id, still
// holds the bytes f was indexed from. Size and modification time equal are
// not enough: `cat other.pcap > f.pcap; touch -r saved f.pcap` keeps both.
// A status change time equal to the one recorded settles it with the stat
// alone; otherwise (also chmod, rename, or an entry from an xffidx that did
// not record it) the start of the file is hashed again and compared.
func (id Identity) Unchanged(path string, f *FileInfo) bool {
	if id.Size != f.Size || !id.ModTime.Equal(f.ModTime) || f.Inode != 0 && !id.SameFile(f) {
		return false
	}
	if !f.CTime.IsZero() && id.CTime.Equal(f.CTime) {
		return true
	}
	return SameStart(path, f)
}

// SameFile reports whether id is the file (device and inode) f was.
func (id Identity) SameFile(f *FileInfo) bool {
	return f.Inode != 0 && uint64(id.Dev) == f.Dev && uint64(id.Inode) == f.Inode
}

// Fingerprint hashes n bytes of the capture at path from offset from. A
// compressed capture is hashed decompressed (its first bytes decoded), so
// that a capture compressed after it was indexed (logrotate's rename, then
// gzip) is recognised as the one it was.
func Fingerprint(path string, from, n int64) (string, error) {
	f, err := format.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var src io.ReaderAt = f
	var head [64]byte
	got, _ := f.ReadAt(head[:], 0)
	if codec := compressed.Detect(head[:got]); codec != compressed.None {
		st, err := f.Stat()
		if err != nil {
			return "", err
		}
		src = compressed.NewFile(f, st.Size(), codec, nil, compressed.Options{})
	}
	h := sha256.New()
	if k, err := io.Copy(h, io.NewSectionReader(src, from, n)); err != nil {
		return "", err
	} else if k < n {
		return "", fmt.Errorf("%s: %d bytes to hash at offset %d, %d there", path, n, from, k)
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
	return StateOf(f, id)
}

// StateOf compares the file at f.Path, which stats as id, with its catalog
// entry.
func StateOf(f *FileInfo, id Identity) FileState {
	switch {
	case f.Inode != 0 && !id.SameFile(f):
		return StateChanged
	case id.Unchanged(f.Path, f):
		return StateOK
	case id.Size > f.Size && SameStart(f.Path, f):
		return StateGrown
	}
	return StateChanged
}
