package index

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/xffidx/xffidx/format/xff"
)

// hitEntry is one hit key, as four big-endian words zero-padded past the
// key's end, and its value. Within a family keys have one length, so
// comparing the words compares the keys; the family byte comes before any
// padding, so IPv4 keys sort before IPv6 ones as the bytes do.
type hitEntry struct {
	w    [4]uint64
	pos  uint32
	conn uint32 // ConnStart as encodeConn gives it; 0 unknown
}

const hitEntrySize = 40 // on disk in a run file: 32 key bytes, 8 value bytes

func (e *hitEntry) keyLen() int {
	if byte(e.w[0]>>48) == 4 {
		return hitKeyLen4
	}
	return hitKeyLen6
}

func (e *hitEntry) appendKey(dst []byte) []byte {
	var b [32]byte
	for i, w := range e.w {
		binary.BigEndian.PutUint64(b[8*i:], w)
	}
	return append(dst, b[:e.keyLen()]...)
}

func compareEntries(a, b hitEntry) int {
	// The position breaks ties so that a duplicate keeps its first
	// position; the connection start then, so that which duplicate is kept
	// does not depend on how the entries were spilled and merged.
	// (Stopping at the first difference: cmp.Or would have all six
	// comparisons made first.)
	if c := compareKeys(a, b); c != 0 {
		return c
	}
	if a.pos != b.pos {
		return cmp.Compare(a.pos, b.pos)
	}
	return cmp.Compare(a.conn, b.conn)
}

// TableBuilder collects the keys of one capture file in any order and writes
// them as sorted SSTables for Store.Commit. Hits are kept as fixed-size
// entries; when more than spillEntries accumulate they are sorted and written
// to a run file, and Finish merges the runs. The other keys (request
// records, values, the connection state) spill the same way (extras).
type TableBuilder struct {
	store        *Store
	dir          string
	fid          uint32
	hits         []hitEntry
	scratch      []hitEntry // sortHits merges into it
	extras       extras
	runs         []run
	spillEntries int
	key, val     []byte
	replaces     []FileInfo // removed by the tables (Finish)
	// Entries counts the hit keys added (duplicates included).
	Entries int64
}

// DefaultSpillEntries bounds the in-memory hit buffer (2^15 entries of 40
// bytes: about 1 MiB, with the sort's merge buffer twice that).
const DefaultSpillEntries = 1 << 15

// NewTable starts the table of file fid in the store's scratch directory.
func (s *Store) NewTable(fid uint32) (*TableBuilder, error) {
	if err := os.MkdirAll(s.tmpDir(), 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(s.tmpDir(), fmt.Sprintf("file%d-", fid))
	if err != nil {
		return nil, err
	}
	return &TableBuilder{store: s, dir: dir, fid: fid, spillEntries: DefaultSpillEntries, extras: extras{dir: dir}}, nil
}

// AddHit records that addr is at position pos of the list of header h of
// the packet record at off, in a connection that starts at the record at
// connStart (its SYN if syn; -1: not known).
func (t *TableBuilder) AddHit(addr netip.Addr, off int64, h xff.Header, pos int, connStart int64, syn bool) error {
	var b [32]byte // zero past the key; stays on the stack
	HitKey(b[:0], addr, t.fid, off, h)
	e := hitEntry{pos: uint32(min(pos, 1<<31)), conn: encodeConn(off, connStart, syn)}
	for i := range e.w {
		e.w[i] = binary.BigEndian.Uint64(b[8*i:])
	}
	if len(t.hits) == cap(t.hits) {
		// 1024 entries, then at once all a spill holds: append would grow
		// a large slice by a quarter at a time, each step fresh memory
		// (page faults) and a copy.
		n := 1024
		if cap(t.hits) > 0 {
			n = t.spillEntries - len(t.hits)
		}
		t.hits = slices.Grow(t.hits, max(n, 1))
	}
	t.hits = append(t.hits, e)
	t.Entries++
	if len(t.hits) >= t.spillEntries {
		return t.spill()
	}
	return nil
}

// AddRaw stores the raw value of header h of the packet record at off.
func (t *TableBuilder) AddRaw(off int64, h xff.Header, raw []byte) error {
	t.key = ValueKey(t.key[:0], t.fid, off, h)
	return t.extras.add(t.key, raw)
}

// AddRequest records the request behind the hits of the packet record at
// off. Recorded twice, the later one counts.
func (t *TableBuilder) AddRequest(off int64, r *Request) error {
	t.key = RequestKey(t.key[:0], t.fid, off, r.Seq)
	t.val = appendRequest(t.val[:0], r)
	return t.extras.add(t.key, t.val)
}

// SetState stores the file's connection state at its end (package
// format/stream), from which a build of the grown file, or of the next
// capture of a rotation, goes on.
func (t *TableBuilder) SetState(state []byte) error {
	return t.extras.add(stateKey(t.fid), state)
}

// AddSeekPoint stores a restart point of a compressed capture at
// uncompressed offset off (encoded by package format/compressed).
func (t *TableBuilder) AddSeekPoint(off int64, point []byte) error {
	return t.extras.add(seekKey(t.fid, off), point)
}

// sortHits sorts the in-memory hits, both halves at once on two cores.
func (t *TableBuilder) sortHits() {
	h := t.hits
	if len(h) < 1<<14 {
		slices.SortFunc(h, compareEntries)
		return
	}
	mid := len(h) / 2
	var wg sync.WaitGroup
	wg.Go(func() { slices.SortFunc(h[:mid], compareEntries) })
	slices.SortFunc(h[mid:], compareEntries)
	wg.Wait()
	merged := t.scratch[:0] // the buffer the last sort left
	if cap(merged) < len(h) {
		merged = make([]hitEntry, 0, len(h))
	}
	i, j := 0, mid
	for i < mid && j < len(h) {
		if compareEntries(h[j], h[i]) < 0 {
			merged = append(merged, h[j])
			j++
		} else {
			merged = append(merged, h[i])
			i++
		}
	}
	merged = append(append(merged, h[i:mid]...), h[j:]...)
	t.hits, t.scratch = merged, h
}

func (t *TableBuilder) spill() error {
	t.sortHits()
	r, err := writeRun(hitCodec, filepath.Join(t.dir, fmt.Sprintf("run%04d", len(t.runs))), func(emit func(hitEntry) error) error {
		for _, e := range t.hits {
			emit(e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.runs = append(t.runs, r)
	t.hits = t.hits[:0]
	return nil
}

// Finish writes the file's SSTables, catalog entry included, and returns
// their paths, in key order and with disjoint key ranges, for one Ingest.
// The sorted hits are cut in two between two keys (with spilled runs: at
// the middle key of the largest run, found in each run by binary search)
// and both tables are written at once, each from its own merge. The tables
// also remove the files replaces names (an older entry of a changed file),
// as Delete does, so that the one Ingest swaps them: there is never a
// moment with two entries for one path.
func (t *TableBuilder) Finish(info FileInfo, replaces ...FileInfo) ([]string, error) {
	info.ID = t.fid
	cat := appendFileInfo(nil, &info)
	t.replaces = sortedByID(slices.DeleteFunc(slices.Clone(replaces), func(f FileInfo) bool { return f.ID == t.fid }))
	t.sortHits()
	runs, err := reduceRuns(hitCodec, t.dir, "run", t.runs)
	if err != nil {
		return nil, err
	}
	parts := []hitPart{{runs: runs, mem: t.hits}}
	if n := int64(len(t.hits)) + entriesIn(runs); n >= 1<<14 {
		if parts, err = splitHits(runs, t.hits); err != nil {
			return nil, err
		}
	}
	paths := make([]string, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, part := range parts {
		paths[i] = filepath.Join(t.dir, fmt.Sprintf("table%d.sst", i))
		c, last := cat, i == len(parts)-1
		if i > 0 {
			c = nil // the catalog key sorts first: it goes in the first table
		}
		wg.Go(func() {
			errs[i] = t.writeTable(paths[i], c, last, func(emit func(hitEntry) error) error {
				if len(part.runs) > 0 {
					return mergeFiles(hitCodec, part.runs, part.mem, emit)
				}
				for _, e := range part.mem {
					if err := emit(e); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // the tables fail alike (a full disk): one says it
		}
	}
	return paths, nil
}

// hitPart is a key range of the hits: its share of each sorted run file,
// and of the sorted hits in memory.
type hitPart struct {
	runs []run
	mem  []hitEntry
}

func entriesIn(runs []run) int64 {
	var n int64
	for _, r := range runs {
		n += r.entries
	}
	return n
}

// splitHits cuts the hits of runs (whole files) and mem in two parts at a
// key: every entry with that key or a greater one goes to the second, so
// that the duplicates of a key, adjacent once merged, stay together. The
// key is the middle one of the largest source.
func splitHits(runs []run, mem []hitEntry) ([]hitPart, error) {
	var pivot hitEntry
	largest := int64(len(mem))
	if largest > 0 {
		pivot = mem[len(mem)/2]
	}
	files := make([]*os.File, len(runs))
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i, r := range runs {
		f, err := os.Open(r.name)
		if err != nil {
			return nil, err
		}
		files[i] = f
		if r.entries > largest {
			if pivot, err = hitAt(f, r.entries/2); err != nil {
				return nil, fmt.Errorf("%s: %w", r.name, err)
			}
			largest = r.entries
		}
	}
	before := func(e hitEntry) bool { return compareKeys(e, pivot) < 0 }
	parts := []hitPart{{}, {}}
	for i, r := range runs {
		// The first entry not before the pivot, by binary search.
		lo, hi := int64(0), r.entries
		for lo < hi {
			mid := lo + (hi-lo)/2
			e, err := hitAt(files[i], mid)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", r.name, err)
			}
			if before(e) {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		cut := lo * hitEntrySize
		if lo > 0 {
			parts[0].runs = append(parts[0].runs, run{name: r.name, entries: lo, from: 0, to: cut})
		}
		if lo < r.entries {
			parts[1].runs = append(parts[1].runs, run{name: r.name, entries: r.entries - lo, from: cut, to: r.entries * hitEntrySize})
		}
	}
	m, _ := slices.BinarySearchFunc(mem, pivot, compareKeys)
	parts[0].mem, parts[1].mem = mem[:m], mem[m:]
	return parts, nil
}

// compareKeys orders hit entries by key alone.
func compareKeys(a, b hitEntry) int {
	for i := range a.w {
		if a.w[i] != b.w[i] {
			return cmp.Compare(a.w[i], b.w[i])
		}
	}
	return 0
}

// hitAt reads entry i of a run file.
func hitAt(f *os.File, i int64) (hitEntry, error) {
	var rec [hitEntrySize]byte
	if _, err := f.ReadAt(rec[:], i*hitEntrySize); err != nil {
		return hitEntry{}, err
	}
	return decodeHit(rec[:]), nil
}

// writeTable writes one SSTable: the removal of the replaced files and the
// catalog key if cat is set, the hits that each yields (sorted, duplicates
// dropped), then, in the last table (last), the schema key, the range
// deletions of the replaced files' other keys and the new ones ('r', 's',
// 'v', which sort after the schema key; range deletions are a separate
// sorted stream in a table).
func (t *TableBuilder) writeTable(path string, cat []byte, last bool, each func(func(hitEntry) error) error) error {
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	opts := t.store.options(false)
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), opts.MakeWriterOptions(0, pebble.FormatNewest.MaxTableFormat()))
	err = func() error {
		if cat != nil {
			// The replaced files' keys sort before the new entry's:
			// 'd' fid, then 'f' fid with a lower fid.
			if err := retirePoints(w, t.replaces); err != nil {
				return err
			}
			if err := w.Set(fileKey(t.fid), cat); err != nil {
				return err
			}
		}
		var prev hitEntry
		first := true
		var key []byte
		var val [2 * binary.MaxVarintLen32]byte
		err := each(func(e hitEntry) error {
			if !first && e.w == prev.w {
				return nil // the same address twice in one header of a packet: one hit
			}
			first, prev = false, e
			key = e.appendKey(key[:0])
			v := binary.AppendUvarint(val[:0], uint64(e.pos))
			if e.conn != 0 {
				v = binary.AppendUvarint(v, uint64(e.conn))
			}
			return w.Set(key, v)
		})
		if err != nil {
			return err
		}
		if !last {
			return nil
		}
		if err := w.Set(schemaKey, []byte(SchemaVersion)); err != nil {
			return err
		}
		if err := retireRanges(w, t.replaces); err != nil {
			return err
		}
		return t.extras.each(func(k, v []byte) error { return w.Set(k, v) })
	}()
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Discard removes the builder's scratch files.
func (t *TableBuilder) Discard() error {
	return os.RemoveAll(t.dir)
}

// hitCodec reads and writes hit entries in run files: the key's 32 bytes,
// the position and the connection start, big-endian.
var hitCodec = runCodec[hitEntry]{
	compare: compareEntries,
	// Both work in the buffer's own memory: a record array of their own
	// would escape to the heap, one allocation per hit.
	read: func(r *bufio.Reader) (hitEntry, error) {
		var e hitEntry
		rec, err := r.Peek(hitEntrySize)
		if len(rec) < hitEntrySize {
			if len(rec) > 0 && err == io.EOF {
				return e, errors.New("run file cut short")
			}
			return e, err
		}
		e = decodeHit(rec)
		r.Discard(hitEntrySize)
		return e, nil
	},
	write: func(w *bufio.Writer, e hitEntry) {
		rec := w.AvailableBuffer()
		for _, x := range e.w {
			rec = binary.BigEndian.AppendUint64(rec, x)
		}
		rec = binary.BigEndian.AppendUint32(rec, e.pos)
		rec = binary.BigEndian.AppendUint32(rec, e.conn)
		w.Write(rec)
	},
}

// decodeHit reads a hit entry as the run codec writes it.
func decodeHit(rec []byte) hitEntry {
	var e hitEntry
	for i := range e.w {
		e.w[i] = binary.BigEndian.Uint64(rec[8*i:])
	}
	e.pos = binary.BigEndian.Uint32(rec[32:])
	e.conn = binary.BigEndian.Uint32(rec[36:])
	return e
}

// encodeConn packs where a hit's connection starts, relative to the hit's
// record: (off - connStart + 1) << 1 | syn, 0 when not known or too far
// (2 GiB) to say.
func encodeConn(off, connStart int64, syn bool) uint32 {
	d := off - connStart + 1
	if connStart < 0 || d <= 0 || d >= 1<<31 {
		return 0
	}
	v := uint32(d) << 1
	if syn {
		v |= 1
	}
	return v
}

// decodeConn undoes encodeConn: the connection's first record, -1 if not
// known, and whether it is its SYN.
func decodeConn(off int64, v uint64) (int64, bool) {
	if v == 0 || v >= 1<<32 {
		return -1, false
	}
	return off - int64(v>>1) + 1, v&1 != 0
}
