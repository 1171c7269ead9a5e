package index

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/compressed"
	"github.com/xffidx/xffidx/format/xff"
)

// A catalog entry ('f' fid) is a binary record, version catalogVersion:
// decoding one costs about a microsecond, where the JSON of schema 3 cost
// eighteen, which a build reading 200,000 entries pays for each. Fields in
// FileInfo's order (ID is the key's); integers are varints (zigzag),
// counts and ids uvarints, strings a uvarint length and the bytes, a time
// 0 (zero) or 1 followed by seconds (varint) and nanoseconds (uvarint).
//
// The version byte says which fields an entry holds, so that a field is
// added without a schema change or an upgrade pass: append it at the end of
// appendFileInfo, bump catalogVersion, and have decodeFileInfo read it only
// from entries of that version or later. Entries written before decode with
// the field zero (as a JSON entry of schema 3 without it did) and take the
// new form when the build next writes them. An entry of a version above
// catalogVersion was written by a newer xffidx and does not decode.
//
// Version 2 added CTime; version 3 Container and DataSize (compressed
// captures).
const catalogVersion = 3

// Bounds of a decoded catalog entry: a value is hostile like any file.
const (
	maxString      = 4096 // PATH_MAX
	maxFingerprint = 128
)

// appendFileInfo encodes f (not its ID: the key holds it).
func appendFileInfo(b []byte, f *FileInfo) []byte {
	e := encoder{b: append(b, catalogVersion)}
	e.str(f.Path)
	e.int(f.Size)
	e.time(f.ModTime)
	e.str(f.Format)
	e.uint(uint64(len(f.LinkTypes)))
	for _, lt := range f.LinkTypes {
		e.uint(uint64(lt))
	}
	e.int(f.Packets)
	e.int(f.Hits)
	e.int(f.XFFLines)
	e.int(f.OtherLines)
	e.uint(uint64(f.Headers))
	e.int(f.Addresses)
	e.int(f.NonAddresses)
	e.time(f.FirstTS)
	e.time(f.LastTS)
	e.int(f.SkippedBytes)
	e.uint(uint64(len(f.Sections)))
	for i := range f.Sections {
		sec := &f.Sections[i]
		e.int(sec.Offset)
		big := uint64(0)
		if sec.BigEndian {
			big = 1
		}
		e.uint(big)
		e.uint(uint64(len(sec.Ifaces)))
		for _, iface := range sec.Ifaces {
			e.uint(uint64(iface.LinkType))
			e.uint(uint64(iface.SnapLen))
			e.uint(uint64(iface.TSResol))
			e.int(iface.TSOffset)
		}
	}
	e.time(f.IndexedAt)
	e.uint(f.Dev)
	e.uint(f.Inode)
	e.str(f.Fingerprint)
	e.int(f.FingerprintFrom)
	e.int(f.FingerprintLen)
	e.int(f.ResumeAt)
	e.int(int64(f.Tracking))
	for _, n := range []int64{f.ContLines, f.Requests, f.Dups, f.Early, f.Gaps, f.Evicted, f.Overflow} {
		e.int(n)
	}
	e.str(f.ContinuesFrom)
	e.time(f.CTime)
	e.str(f.Container)
	e.int(f.DataSize)
	return e.b
}

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.uint(0)
		return
	}
	e.uint(1)
	e.int(t.Unix())
	e.uint(uint64(t.Nanosecond()))
}

// errEntry says a catalog value does not decode.
var errEntry = errors.New("not a catalog entry of this xffidx")

// decodeFileInfo decodes the catalog entry of file fid. Nothing is
// allocated beyond what the value's length allows.
func decodeFileInfo(fid uint32, v []byte) (FileInfo, error) {
	f := FileInfo{ID: fid}
	if len(v) == 0 || v[0] == 0 || v[0] == '{' {
		return f, errEntry
	}
	if v[0] > catalogVersion {
		return f, fmt.Errorf("catalog entry of file %d is of version %d, written by a newer xffidx (this one reads up to %d)", fid, v[0], catalogVersion)
	}
	d := decoder{b: v[1:]}
	f.Path = d.str(maxString)
	f.Size = d.int()
	f.ModTime = d.time()
	f.Format = d.str(maxString)
	if n := d.count(1); n > 0 {
		f.LinkTypes = make([]uint32, n)
		for i := range f.LinkTypes {
			f.LinkTypes[i] = uint32(d.uintMax(math.MaxUint32))
		}
	}
	f.Packets, f.Hits, f.XFFLines, f.OtherLines = d.int(), d.int(), d.int(), d.int()
	f.Headers = xff.HeaderSet(d.uintMax(math.MaxUint8))
	f.Addresses, f.NonAddresses = d.int(), d.int()
	f.FirstTS, f.LastTS = d.time(), d.time()
	f.SkippedBytes = d.int()
	if n := d.count(3); n > 0 {
		f.Sections = make([]format.Section, n)
		for i := range f.Sections {
			sec := &f.Sections[i]
			sec.Offset = d.int()
			sec.BigEndian = d.uintMax(1) == 1
			if k := d.count(4); k > 0 {
				sec.Ifaces = make([]format.Interface, k)
				for j := range sec.Ifaces {
					iface := &sec.Ifaces[j]
					iface.LinkType = uint32(d.uintMax(math.MaxUint32))
					iface.SnapLen = uint32(d.uintMax(math.MaxUint32))
					iface.TSResol = uint8(d.uintMax(math.MaxUint8))
					iface.TSOffset = d.int()
				}
			}
		}
	}
	f.IndexedAt = d.time()
	f.Dev, f.Inode = d.uintMax(math.MaxUint64), d.uintMax(math.MaxUint64)
	f.Fingerprint = d.str(maxFingerprint)
	f.FingerprintFrom, f.FingerprintLen, f.ResumeAt = d.int(), d.int(), d.int()
	f.Tracking = int(d.int())
	for _, n := range []*int64{&f.ContLines, &f.Requests, &f.Dups, &f.Early, &f.Gaps, &f.Evicted, &f.Overflow} {
		*n = d.int()
	}
	f.ContinuesFrom = d.str(maxString)
	if v[0] >= 2 {
		f.CTime = d.time()
	}
	if v[0] >= 3 {
		f.Container = d.str(maxString)
		f.DataSize = d.int()
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = errors.New("bytes after its last field")
	}
	if d.err != nil {
		return FileInfo{ID: fid}, fmt.Errorf("catalog entry of file %d does not decode: %w", fid, d.err)
	}
	return f, nil
}

type decoder struct {
	b   []byte
	err error
}

var errCut = errors.New("cut short")

func (d *decoder) uintMax(max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCut
		return 0
	}
	d.b = d.b[n:]
	if v > max {
		d.err = fmt.Errorf("a field holds %d, more than %d", v, max)
		return 0
	}
	return v
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCut
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads the length of a list whose items take at least size bytes
// each: a longer list cannot be in what is left.
func (d *decoder) count(size int) int {
	n := d.uintMax(math.MaxInt32)
	if d.err == nil && n > uint64(len(d.b)/size) {
		d.err = errCut
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

func (d *decoder) str(max int) string {
	n := d.uintMax(uint64(max))
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errCut
	}
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) time() time.Time {
	switch d.uintMax(1) {
	case 0:
		return time.Time{}
	default:
		sec := d.int()
		nsec := d.uintMax(999_999_999)
		if d.err != nil {
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	}
}

// InvalidEntry is a catalog entry that does not decode, or whose fields
// would make a reader index out of its bounds (index contents are hostile
// like capture bytes): its file's hits are not answered.
type InvalidEntry struct {
	ID     uint32
	Path   string // empty if the entry does not decode
	Reason error
	Hits   int // hits of the call that are in this file and not answered
}

func (e InvalidEntry) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("catalog entry of file %d is invalid: %v", e.ID, e.Reason)
	}
	// %q: the path comes from the index, and may hold control characters.
	return fmt.Sprintf("catalog entry for %q is invalid: %v", e.Path, e.Reason)
}

// InvalidEntries is returned by a call that answered from every catalog
// entry but these, with the answer of the others.
type InvalidEntries []InvalidEntry

func (e InvalidEntries) Error() string {
	if len(e) == 1 {
		return e[0].Error()
	}
	return fmt.Sprintf("%v (and %d more invalid catalog entries)", e[0], len(e)-1)
}

// readEntry decodes and validates the catalog entry of file fid; an error
// is an InvalidEntry.
func readEntry(fid uint32, v []byte) (FileInfo, error) {
	f, err := decodeFileInfo(fid, v)
	if err == nil {
		err = f.validate()
	}
	if err != nil {
		return FileInfo{ID: fid}, InvalidEntry{ID: fid, Path: f.Path, Reason: err}
	}
	return f, nil
}

// validate checks what readers index with or seek to: the format, the
// sections (a pcap file has one, at 0, with one interface, which the
// record walker reads; a pcapng section may have none, since its records
// name theirs and are checked), offsets within the file.
func (f *FileInfo) validate() error {
	switch {
	case f.Path == "" || !filepath.IsAbs(f.Path) || strings.IndexByte(f.Path, 0) >= 0:
		return errors.New("the path is not an absolute path")
	case f.Format != format.KindPcap.String() && f.Format != format.KindPcapNG.String():
		return fmt.Errorf("format %q is neither pcap nor pcapng", f.Format[:min(len(f.Format), 16)])
	case f.Size < 0 || f.DataSize < 0:
		return fmt.Errorf("size %d (uncompressed %d)", f.Size, f.DataSize)
	case !knownContainer(f.Container):
		return fmt.Errorf("container %q is not one xffidx reads", f.Container[:min(len(f.Container), 16)])
	case f.ResumeAt < 0 || f.ResumeAt > f.DataEnd():
		return fmt.Errorf("resume offset %d is outside the file (%d bytes)", f.ResumeAt, f.DataEnd())
	case f.FingerprintFrom < 0 || f.FingerprintFrom > f.DataEnd() || f.FingerprintLen < 0 || f.FingerprintLen > 64<<10:
		return fmt.Errorf("fingerprint of %d bytes at %d is outside the file (%d bytes)", f.FingerprintLen, f.FingerprintFrom, f.DataEnd())
	case len(f.Sections) == 0:
		return errors.New("no section")
	case f.Format == format.KindPcap.String() && (len(f.Sections) != 1 || f.Sections[0].Offset != 0):
		return fmt.Errorf("a pcap file has one section, at offset 0, not %d", len(f.Sections))
	}
	for i, sec := range f.Sections {
		switch {
		case sec.Offset < 0 || sec.Offset >= f.DataEnd():
			return fmt.Errorf("section %d at offset %d is outside the file (%d bytes)", i, sec.Offset, f.DataEnd())
		case i > 0 && sec.Offset <= f.Sections[i-1].Offset:
			return fmt.Errorf("section %d at offset %d does not follow section %d", i, sec.Offset, i-1)
		case f.Format == format.KindPcap.String() && len(sec.Ifaces) != 1:
			return fmt.Errorf("the pcap section lists %d interfaces, not one", len(sec.Ifaces))
		}
	}
	return nil
}

func knownContainer(c string) bool {
	_, ok := compressed.ParseCodec(c)
	return ok
}

// convertLegacyEntries rewrites catalog entries an older xffidx wrote as
// JSON in the current encoding (part of Store.Upgrade). Entries already
// converted are left; one that does not decode either way is left for
// readers to report.
func convertLegacyEntries(db *pebble.DB) (int, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagFile}, UpperBound: []byte{tagFile + 1}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	b := db.NewBatch()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		v := it.Value()
		if len(it.Key()) != 5 || len(v) == 0 || v[0] != '{' {
			continue
		}
		var f FileInfo
		if json.Unmarshal(v, &f) != nil {
			continue
		}
		f.ID = binary.BigEndian.Uint32(it.Key()[1:])
		if err := b.Set(it.Key(), appendFileInfo(nil, &f), nil); err != nil {
			return n, err
		}
		n++
	}
	if err := it.Error(); err != nil {
		return n, err
	}
	return n, b.Commit(pebble.Sync)
}

// catalogReader reads catalog entries by file id as a look-up meets them,
// each once: a query decodes the entries of the files its hits are in, not
// the whole catalog.
type catalogReader struct {
	counts  *Counts
	maxID   uint32 // 0: any; else ids above it are left out
	entries map[uint32]*FileInfo
	invalid map[uint32]*InvalidEntry
}

func newCatalogReader(counts *Counts) *catalogReader {
	return &catalogReader{counts: counts, entries: map[uint32]*FileInfo{}, invalid: map[uint32]*InvalidEntry{}}
}

// get returns the entry of file fid, nil if it has none (the file was
// removed: its hits wait for Collect) or it is invalid (then counted in
// c.invalid, which says why).
func (c *catalogReader) get(db pebble.Reader, fid uint32) (*FileInfo, error) {
	if f, ok := c.entries[fid]; ok {
		if f == nil {
			if inv := c.invalid[fid]; inv != nil {
				inv.Hits++
			}
		}
		return f, nil
	}
	if c.maxID != 0 && fid > c.maxID {
		return nil, nil
	}
	defer c.counts.catalogRead(c.counts.now())
	v, closer, err := db.Get(fileKey(fid))
	if errors.Is(err, pebble.ErrNotFound) {
		c.entries[fid] = nil
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	c.counts.decoded(1)
	f, err := readEntry(fid, v)
	if inv, ok := err.(InvalidEntry); ok {
		inv.Hits = 1
		c.entries[fid] = nil
		c.invalid[fid] = &inv
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c.entries[fid] = &f
	return &f, nil
}

// problems returns the invalid entries met, by id; nil if none.
func (c *catalogReader) problems() error {
	if len(c.invalid) == 0 {
		return nil
	}
	var out InvalidEntries
	for _, inv := range c.invalid {
		out = append(out, *inv)
	}
	slices.SortFunc(out, func(a, b InvalidEntry) int { return int(int64(a.ID) - int64(b.ID)) })
	return out
}

// files returns the entries read, by id.
func (c *catalogReader) files() []FileInfo {
	var out []FileInfo
	for _, f := range c.entries {
		if f != nil {
			out = append(out, *f)
		}
	}
	slices.SortFunc(out, func(a, b FileInfo) int { return int(int64(a.ID) - int64(b.ID)) })
	return out
}
