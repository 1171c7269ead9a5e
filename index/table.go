package index

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TableBuilder collects the keys of one capture file in any order and writes
// them as one sorted SSTable for Store.Commit. Memory is bounded by
// spillBytes: when the buffer fills it is sorted and written to a run file,
// and Finish merges the runs.
type TableBuilder struct {
	store *Store
	dir   string
	fid   uint32
	// buf holds records as uvarint(len key) key uvarint(len value) value;
	// recs holds their start offsets.
	buf        []byte
	recs       []uint32
	runs       []string
	spillBytes int
	key        []byte
	// Entries counts the hit keys added (duplicates included).
	Entries int64
}

// DefaultSpillBytes is the in-memory run size.
const DefaultSpillBytes = 64 << 20

// NewTable starts the table of file fid in the store's scratch directory.
func (s *Store) NewTable(fid uint32) (*TableBuilder, error) {
	if err := os.MkdirAll(s.tmpDir(), 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(s.tmpDir(), fmt.Sprintf("file%d-", fid))
	if err != nil {
		return nil, err
	}
	return &TableBuilder{store: s, dir: dir, fid: fid, spillBytes: DefaultSpillBytes}, nil
}

// AddHit records that addr is at position pos of the XFF list of the packet
// record at off.
func (t *TableBuilder) AddHit(addr netip.Addr, off int64, pos int) error {
	t.key = HitKey(t.key[:0], addr, t.fid, off)
	var v [binary.MaxVarintLen64]byte
	t.Entries++
	return t.add(t.key, v[:binary.PutUvarint(v[:], uint64(pos))])
}

// AddRaw stores the raw XFF value of the packet record at off.
func (t *TableBuilder) AddRaw(off int64, raw []byte) error {
	t.key = ValueKey(t.key[:0], t.fid, off)
	return t.add(t.key, raw)
}

func (t *TableBuilder) add(k, v []byte) error {
	t.recs = append(t.recs, uint32(len(t.buf)))
	t.buf = binary.AppendUvarint(t.buf, uint64(len(k)))
	t.buf = append(t.buf, k...)
	t.buf = binary.AppendUvarint(t.buf, uint64(len(v)))
	t.buf = append(t.buf, v...)
	if len(t.buf) >= t.spillBytes {
		return t.spill()
	}
	return nil
}

func splitRecord(b []byte) (k, v, rest []byte) {
	n, w := binary.Uvarint(b)
	k = b[w : w+int(n)]
	b = b[w+int(n):]
	n, w = binary.Uvarint(b)
	return k, b[w : w+int(n)], b[w+int(n):]
}

func (t *TableBuilder) sortBuffer() {
	slices.SortFunc(t.recs, func(a, b uint32) int {
		ka, _, _ := splitRecord(t.buf[a:])
		kb, _, _ := splitRecord(t.buf[b:])
		return bytes.Compare(ka, kb)
	})
}

func (t *TableBuilder) spill() error {
	t.sortBuffer()
	name := filepath.Join(t.dir, fmt.Sprintf("run%04d", len(t.runs)))
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for _, r := range t.recs {
		k, v, _ := splitRecord(t.buf[r:])
		w.Write(binary.AppendUvarint(t.key[:0], uint64(len(k))))
		w.Write(k)
		w.Write(binary.AppendUvarint(t.key[:0], uint64(len(v))))
		w.Write(v)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing run %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	t.runs = append(t.runs, name)
	t.buf, t.recs = t.buf[:0], t.recs[:0]
	return nil
}

// Finish writes the SSTable with the catalog entry and returns its path.
func (t *TableBuilder) Finish(info FileInfo) (string, error) {
	info.ID = t.fid
	cat, err := json.Marshal(info)
	if err != nil {
		return "", err
	}
	t.sortBuffer()
	sources := []recordSource{&memSource{t: t}}
	for _, name := range t.runs {
		f, err := os.Open(name)
		if err != nil {
			return "", err
		}
		defer f.Close()
		sources = append(sources, &runSource{r: bufio.NewReaderSize(f, 256<<10)})
	}
	path := filepath.Join(t.dir, "table.sst")
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return "", err
	}
	opts := t.store.options(false)
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), opts.MakeWriterOptions(0, pebble.FormatNewest.MaxTableFormat()))
	// The catalog key 'f' sorts before every hit and value key.
	if err := w.Set(fileKey(t.fid), cat); err != nil {
		w.Close()
		return "", err
	}
	var last []byte
	err = mergeSources(sources, func(k, v []byte) error {
		if last != nil && bytes.Equal(k, last) {
			return nil // the same address twice in one packet: one hit
		}
		last = append(last[:0], k...)
		return w.Set(k, v)
	})
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}

// Discard removes the builder's scratch files.
func (t *TableBuilder) Discard() error {
	return os.RemoveAll(t.dir)
}

type recordSource interface {
	next() (k, v []byte, err error) // io.EOF at the end
}

type memSource struct {
	t *TableBuilder
	i int
}

func (m *memSource) next() ([]byte, []byte, error) {
	if m.i >= len(m.t.recs) {
		return nil, nil, io.EOF
	}
	k, v, _ := splitRecord(m.t.buf[m.t.recs[m.i]:])
	m.i++
	return k, v, nil
}

type runSource struct {
	r    *bufio.Reader
	k, v []byte
}

func (r *runSource) next() ([]byte, []byte, error) {
	read := func(dst []byte) ([]byte, error) {
		n, err := binary.ReadUvarint(r.r)
		if err != nil {
			return nil, err
		}
		if n > 1<<20 {
			return nil, errors.New("corrupt run file")
		}
		dst = slices.Grow(dst[:0], int(n))[:n]
		_, err = io.ReadFull(r.r, dst)
		return dst, err
	}
	var err error
	if r.k, err = read(r.k); err != nil {
		return nil, nil, err
	}
	if r.v, err = read(r.v); err != nil {
		return nil, nil, io.ErrUnexpectedEOF
	}
	return r.k, r.v, nil
}

type mergeItem struct {
	k, v []byte
	src  recordSource
}

type mergeHeap []mergeItem

func (h mergeHeap) Len() int           { return len(h) }
func (h mergeHeap) Less(i, j int) bool { return bytes.Compare(h[i].k, h[j].k) < 0 }
func (h mergeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)        { *h = append(*h, x.(mergeItem)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func mergeSources(srcs []recordSource, emit func(k, v []byte) error) error {
	h := mergeHeap{}
	for _, s := range srcs {
		k, v, err := s.next()
		if err == io.EOF {
			continue
		}
		if err != nil {
			return err
		}
		h = append(h, mergeItem{k, v, s})
	}
	heap.Init(&h)
	for len(h) > 0 {
		top := &h[0]
		if err := emit(top.k, top.v); err != nil {
			return err
		}
		k, v, err := top.src.next()
		if err == io.EOF {
			heap.Pop(&h)
			continue
		}
		if err != nil {
			return err
		}
		top.k, top.v = k, v
		heap.Fix(&h, 0)
	}
	return nil
}
