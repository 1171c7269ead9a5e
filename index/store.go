package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/xff"
)

// FileInfo is the catalog entry of one indexed capture.
type FileInfo struct {
	ID        uint32    `json:"id"`
	Path      string    `json:"path"`
	Size      int64     `json:"size"`
	ModTime   time.Time `json:"mtime"`
	Format    string    `json:"format"`
	LinkTypes []uint32  `json:"link_types"`
	Packets   int64     `json:"packets"`
	// Hits counts packets with at least one address in a forwarding header.
	Hits     int64 `json:"hits"`
	XFFLines int64 `json:"xff_lines"`
	// OtherLines counts lines of the forwarding headers other than
	// X-Forwarded-For (Forwarded, X-Real-IP, ...).
	OtherLines int64 `json:"other_header_lines"`
	// Headers is the set of headers the file was indexed for: all of
	// them, but X-Forwarded-For alone for a file indexed by schema 1
	// (which knew no other), until a build reads it again.
	Headers xff.HeaderSet `json:"headers"`
	// Addresses counts index entries: (address, packet) pairs.
	Addresses    int64     `json:"addresses"`
	NonAddresses int64     `json:"non_addresses"`
	FirstTS      time.Time `json:"first_ts"`
	LastTS       time.Time `json:"last_ts"`
	SkippedBytes int64     `json:"skipped_bytes"`
	// Sections holds what a reader needs to decode a record at a stored
	// offset: byte order, link types, timestamp resolution.
	Sections  []format.Section `json:"sections"`
	IndexedAt time.Time        `json:"indexed_at"`

	// Identity, for incremental builds: a file is the same one if device
	// and inode (or, after a move across file systems, size and mtime)
	// match and the Fingerprint of its first bytes past the file header
	// (FingerprintFrom, FingerprintLen) is unchanged.
	Dev   uint64 `json:"dev"`
	Inode uint64 `json:"inode"`
	// CTime is the file's status change time when it was indexed (zero
	// from an xffidx that did not record it): see Identity.Unchanged.
	CTime           time.Time `json:"ctime,omitzero"`
	Fingerprint     string    `json:"fingerprint"`
	FingerprintFrom int64     `json:"fingerprint_from"`
	FingerprintLen  int64     `json:"fingerprint_len"`
	// ResumeAt is where the next build of a grown file picks up: the end of
	// the last complete record (a cut last record is read again). The
	// connections open there are saved with the file ('s' key).
	ResumeAt int64 `json:"resume_at"`

	// Tracking is the version of connection tracking the file was indexed
	// with: TrackingVersion follows every connection's request stream
	// (format/stream); 0 is an older xffidx's look-back window, which
	// missed header blocks spread over many segments, so a build reads
	// such a file again.
	Tracking int `json:"tracking,omitempty"`
	// ContLines counts the forwarding header lines found in a segment that
	// does not hold their request line.
	ContLines int64 `json:"continuation_lines"`
	Requests  int64 `json:"requests"`
	// What the connection tracking met: retransmitted segments (read once),
	// segments held until their predecessor came, holes that never filled
	// (gaps: the request they cut is read up to the hole only), open header
	// blocks given up after the idle timeout, and bounds reached.
	Dups     int64 `json:"retransmitted_segments"`
	Early    int64 `json:"reordered_segments"`
	Gaps     int64 `json:"gaps"`
	Evicted  int64 `json:"evicted_blocks"`
	Overflow int64 `json:"overflow"`
	// ContinuesFrom names the capture whose connections this one took up
	// at its start (the previous file of a rotation), if any.
	ContinuesFrom string `json:"continues_from,omitempty"`
	// Container is the compressed container the capture is kept in
	// (compressed.Codec: "gzip", "zstd", "lz4"), "" for a plain capture.
	// Offsets, sections, ResumeAt and the fingerprint are then offsets in
	// the uncompressed stream, and Size, the identity, is the compressed
	// file's; DataSize is the uncompressed length indexed.
	Container string `json:"container,omitempty"`
	DataSize  int64  `json:"data_size,omitempty"`
}

// DataEnd is the length of the capture's bytes (uncompressed) as indexed.
func (f *FileInfo) DataEnd() int64 {
	if f.Container != "" {
		return f.DataSize
	}
	return f.Size
}

// TrackingVersion is FileInfo.Tracking of a file indexed by this xffidx.
const TrackingVersion = 1

// SectionAt returns the section that holds file offset off.
func (f *FileInfo) SectionAt(off int64) (*format.Section, bool) {
	var best *format.Section
	for i := range f.Sections {
		if f.Sections[i].Offset <= off {
			best = &f.Sections[i]
		}
	}
	return best, best != nil
}

// Store is an index directory. It holds the Pebble database open only for
// the duration of one call, because a writer locks it exclusively (and
// readers, side by side, lock it against writers: see indexFS): a query
// started during a long build must not wait for it.
type Store struct {
	Dir string
	// LockWait bounds how long a call waits for another process's short hold
	// on the database.
	LockWait time.Duration
	// ScanHold bounds how long ScanHits and Collect keep the database open
	// at a time (0: 200 ms), so that others waiting for it get their turn.
	ScanHold time.Duration
	// SortMem bounds the memory LookupEach sorts hits in before it spills
	// sorted runs to temporary files (0: extsort.DefaultBudget).
	SortMem int
	// Counts, if set, counts work done (tests, benchmarks).
	Counts *Counts

	// failed is set when Pebble stopped on a failure it cannot go on from
	// (see withDB): every later call returns it.
	failed atomic.Pointer[IndexError]
}

// Catalog returns every indexed file, by id. If some catalog entries are
// invalid, it returns the others and an InvalidEntries error naming them.
func (s *Store) Catalog() ([]FileInfo, error) {
	var files []FileInfo
	err := s.withDB(true, func(db *pebble.DB) error {
		var err error
		files, err = readCatalog(db, s.Counts)
		return err
	})
	var invalid InvalidEntries
	if err != nil && !errors.As(err, &invalid) {
		return nil, err
	}
	return files, err
}

func readCatalog(db pebble.Reader, counts *Counts) ([]FileInfo, error) {
	if err := checkSchema(db); err != nil {
		return nil, err
	}
	return readEntries(db, counts)
}

// readEntries reads every catalog entry: the valid ones, and an
// InvalidEntries error for the others.
func readEntries(db pebble.Reader, counts *Counts) ([]FileInfo, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagFile}, UpperBound: []byte{tagFile + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var files []FileInfo
	var invalid InvalidEntries
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 5 {
			continue // not a catalog key: no reader asks for it
		}
		counts.decoded(1)
		f, err := readEntry(binary.BigEndian.Uint32(k[1:]), it.Value())
		if inv, ok := err.(InvalidEntry); ok {
			invalid = append(invalid, inv)
			continue
		}
		files = append(files, f)
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if len(invalid) > 0 {
		return files, invalid
	}
	return files, nil
}

// Commit ingests the tables of one file (TableBuilder.Finish) in one atomic
// Ingest: its keys, its catalog entry, and the removal of the entries it
// replaces.
func (s *Store) Commit(tables []string) error {
	return s.withDB(false, func(db *pebble.DB) error {
		if err := db.Ingest(context.Background(), tables); err != nil {
			return fmt.Errorf("%s: ingesting %s: %w", s.Dir, strings.Join(tables, ", "), err)
		}
		return nil
	})
}

// Update rewrites catalog entries (a renamed file's new path).
func (s *Store) Update(infos ...FileInfo) error {
	return s.withDB(false, func(db *pebble.DB) error {
		b := db.NewBatch()
		for _, info := range infos {
			if err := b.Set(fileKey(info.ID), appendFileInfo(nil, &info), nil); err != nil {
				return err
			}
		}
		return b.Commit(pebble.Sync)
	})
}

// Hit is one indexed packet whose values of one header hold an address.
type Hit struct {
	Addr   netip.Addr
	File   *FileInfo
	Offset int64
	Header xff.Header
	Pos    int // position of the address in the header's list
	// Raw is the stored raw header value, set only where the packet alone
	// does not show it (files indexed before connection tracking).
	Raw []byte
	// Requests holds the request records of the packet (the 'r' table):
	// set when the packet alone does not show its requests.
	Requests []Request
	// ConnStart is the record where the build took the hit's connection up
	// (its SYN when ConnSYN), -1 if it does not say.
	ConnStart int64
	ConnSYN   bool
}

// Lookup returns the hits of every address in the given prefixes found in
// the given headers, in file, offset and header order (each hit once,
// however the prefixes overlap or repeat), with the catalog
// entries they refer to (those alone are read). Hits of removed files are
// left out. Hits of files whose catalog entry is invalid are left out too,
// and then Lookup returns the others with an InvalidEntries error naming
// those entries and counting their hits. It holds them all: LookupEach
// streams them.
func (s *Store) Lookup(prefixes []netip.Prefix, headers xff.HeaderSet) ([]Hit, []FileInfo, error) {
	var hits []Hit
	info, err := s.LookupEach(prefixes, headers, func(h Hit) error {
		hits = append(hits, h)
		return nil
	})
	return hits, info.Files, err
}

// State returns the connection state saved with file fid (nil if none).
func (s *Store) State(fid uint32) ([]byte, error) {
	var state []byte
	err := s.withDB(true, func(db *pebble.DB) error {
		v, closer, err := db.Get(stateKey(fid))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		state = bytes.Clone(v)
		return closer.Close()
	})
	if err != nil {
		return nil, err
	}
	return state, nil
}

// SeekPoint returns the restart point of compressed file fid nearest at or
// before uncompressed offset off, encoded (compressed.AppendPoint), with its
// offset, and the offset of the next one (-1 if none), so that a reader
// knows the stretch this one serves; ok is false if there is none.
func (s *Store) SeekPoint(fid uint32, off int64) (at int64, point []byte, next int64, ok bool, err error) {
	next = -1
	err = s.withDB(true, func(db *pebble.DB) error {
		lo, hi := fidTableRange(tagSeek, fid, fid)
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		defer it.Close()
		if !it.SeekLT(seekKey(fid, off+1)) {
			return it.Error()
		}
		o, good := decodeSeekKey(it.Key(), fid)
		if !good {
			return fmt.Errorf("restart point key %x of file %d is malformed", it.Key(), fid)
		}
		at, point, ok = o, bytes.Clone(it.Value()), true
		if it.Next() {
			if o, good := decodeSeekKey(it.Key(), fid); good {
				next = o
			}
		}
		return it.Error()
	})
	return at, point, next, ok, err
}

// DeleteSeekPoints removes the restart points of file fid (before its
// container changes: a capture compressed, or compressed another way).
func (s *Store) DeleteSeekPoints(fid uint32) error {
	return s.withDB(false, func(db *pebble.DB) error {
		lo, hi := fidTableRange(tagSeek, fid, fid)
		return db.DeleteRange(lo, hi, pebble.Sync)
	})
}

// SeekPointCount counts the restart points of file fid and their bytes.
func (s *Store) SeekPointCount(fid uint32) (n int, size int64, err error) {
	err = s.withDB(true, func(db *pebble.DB) error {
		lo, hi := fidTableRange(tagSeek, fid, fid)
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		defer it.Close()
		for valid := it.First(); valid; valid = it.Next() {
			n++
			size += int64(len(it.Key()) + len(it.Value()))
		}
		return it.Error()
	})
	return n, size, err
}

// Compact removes the hits of removed files (Collect), whatever their
// share, and compacts the whole database: one sorted run of tables, the
// smallest on disk and the fastest to search.
func (s *Store) Compact() error {
	if !s.Exists() {
		return fmt.Errorf("%s: %w", s.Dir, ErrNoIndex)
	}
	if _, err := s.Collect(-1); err != nil {
		return err
	}
	return s.withDB(false, func(db *pebble.DB) error {
		if err := db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
			return fmt.Errorf("%s: compacting: %w", s.Dir, err)
		}
		return nil
	})
}

// DiskUsage returns the bytes the database's files take.
func (s *Store) DiskUsage() (int64, error) {
	var total int64
	err := filepath.WalkDir(s.dbDir(), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", s.Dir, err)
	}
	return total, nil
}

// ErrBusy says another build holds the index.
var ErrBusy = errors.New("another build is running on this index")

// LockBuild takes the index's build lock, so that one build at a time
// allocates file ids and writes; queries do not take it. With wait false it
// fails at once with ErrBusy. The lock is a flock on a file in the index
// directory: the kernel drops it when the process dies, however it dies.
func (s *Store) LockBuild(wait bool) (unlock func(), err error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, s.classify(fmt.Errorf("%s: %w", s.Dir, err))
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, "build.lock"), os.O_CREATE|os.O_RDWR, s.modes().file)
	if err != nil {
		return nil, s.classify(fmt.Errorf("%s: %w", s.Dir, err))
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", s.Dir, ErrBusy)
		}
		return nil, fmt.Errorf("%s: locking: %w", s.Dir, err)
	}
	// Scratch files of a build that died are of no use to anyone now, nor
	// is a database it did not finish creating.
	os.RemoveAll(s.tmpDir())
	if m, err := filepath.Glob(filepath.Join(s.Dir, newDBPrefix+"*")); err == nil {
		for _, d := range m {
			os.RemoveAll(d)
		}
	}
	return func() { f.Close() }, nil
}
