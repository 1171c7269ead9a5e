package index

import (
	"bufio"
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// extras collects a file's keys other than hits (request records, stored
// values, the connection state), in any order, and hands them back sorted.
// Past extrasSpill bytes they are sorted and written to a run file, so that a
// capture with millions of request records does not hold them in memory.
type extras struct {
	dir   string
	kvs   []kv
	bytes int
	runs  []string
	seq   int // order of addition, so that the latest of equal keys wins
}

type kv struct {
	key, val []byte
	seq      int
}

const extrasSpill = 16 << 20

func (x *extras) add(key, val []byte) error {
	x.kvs = append(x.kvs, kv{bytes.Clone(key), bytes.Clone(val), x.seq})
	x.seq++
	x.bytes += len(key) + len(val) + 48
	if x.bytes > extrasSpill {
		return x.spill()
	}
	return nil
}

func compareKV(a, b kv) int {
	if c := bytes.Compare(a.key, b.key); c != 0 {
		return c
	}
	return a.seq - b.seq
}

func (x *extras) spill() error {
	slices.SortFunc(x.kvs, compareKV)
	name := filepath.Join(x.dir, fmt.Sprintf("extras%04d", len(x.runs)))
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var n [3 * binary.MaxVarintLen64]byte
	for _, e := range x.kvs {
		b := binary.AppendUvarint(n[:0], uint64(len(e.key)))
		b = binary.AppendUvarint(b, uint64(len(e.val)))
		b = binary.AppendUvarint(b, uint64(e.seq))
		w.Write(b)
		w.Write(e.key)
		w.Write(e.val)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing run %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	x.runs = append(x.runs, name)
	x.kvs, x.bytes = x.kvs[:0], 0
	return nil
}

// each calls fn for every key in order, once, with the value added last.
func (x *extras) each(fn func(key, val []byte) error) error {
	slices.SortFunc(x.kvs, compareKV)
	srcs := []kvSource{&memKVs{kvs: x.kvs}}
	for _, name := range x.runs {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		srcs = append(srcs, &runKVs{r: bufio.NewReaderSize(f, 32<<10)})
	}
	h := kvHeap{}
	for _, s := range srcs {
		e, err := s.next()
		if err == io.EOF {
			continue
		}
		if err != nil {
			return err
		}
		h = append(h, kvItem{e, s})
	}
	heap.Init(&h)
	var pending *kv
	for len(h) > 0 {
		e := h[0].e
		if pending != nil && !bytes.Equal(pending.key, e.key) {
			if err := fn(pending.key, pending.val); err != nil {
				return err
			}
		}
		pending = &e
		next, err := h[0].src.next()
		if err == io.EOF {
			heap.Pop(&h)
			continue
		}
		if err != nil {
			return err
		}
		h[0].e = next
		heap.Fix(&h, 0)
	}
	if pending != nil {
		return fn(pending.key, pending.val)
	}
	return nil
}

type kvSource interface {
	next() (kv, error) // io.EOF at the end
}

type memKVs struct {
	kvs []kv
	i   int
}

func (m *memKVs) next() (kv, error) {
	if m.i >= len(m.kvs) {
		return kv{}, io.EOF
	}
	m.i++
	return m.kvs[m.i-1], nil
}

type runKVs struct{ r *bufio.Reader }

func (r *runKVs) next() (kv, error) {
	kl, err := binary.ReadUvarint(r.r)
	if err != nil {
		return kv{}, err // io.EOF at a record boundary
	}
	vl, err1 := binary.ReadUvarint(r.r)
	seq, err2 := binary.ReadUvarint(r.r)
	if err := errors.Join(err1, err2); err != nil || kl > 1<<20 || vl > 1<<30 {
		return kv{}, errors.New("extras run file is corrupt")
	}
	e := kv{key: make([]byte, kl), val: make([]byte, vl), seq: int(seq)}
	if _, err := io.ReadFull(r.r, e.key); err != nil {
		return kv{}, errors.New("extras run file cut short")
	}
	if _, err := io.ReadFull(r.r, e.val); err != nil {
		return kv{}, errors.New("extras run file cut short")
	}
	return e, nil
}

type kvItem struct {
	e   kv
	src kvSource
}

type kvHeap []kvItem

func (h kvHeap) Len() int           { return len(h) }
func (h kvHeap) Less(i, j int) bool { return compareKV(h[i].e, h[j].e) < 0 }
func (h kvHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *kvHeap) Push(x any)        { *h = append(*h, x.(kvItem)) }
func (h *kvHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
