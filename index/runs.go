package index

import (
	"bufio"
	"cmp"
	"container/heap"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// mergeFanIn bounds the run files merged at once, and so the descriptors
// and read buffers a table builder holds open: a capture with tens of
// millions of hits spills hundreds of runs, and a process may have only 64
// descriptors (ulimit -n).
const mergeFanIn = 16

// runReadBuffer is the read buffer of one run file being merged.
const runReadBuffer = 32 << 10

// runCodec reads, writes and orders the entries of one kind of run file.
type runCodec[T any] struct {
	compare func(a, b T) int
	read    func(r *bufio.Reader) (T, error) // io.EOF at a clean end
	write   func(w *bufio.Writer, e T)
}

// source yields sorted entries; io.EOF at the end.
type source[T any] interface {
	next() (T, error)
}

// sliceSource yields the entries of a sorted slice.
type sliceSource[T any] struct {
	s []T
	i int
}

func (m *sliceSource[T]) next() (T, error) {
	if m.i >= len(m.s) {
		var zero T
		return zero, io.EOF
	}
	m.i++
	return m.s[m.i-1], nil
}

// run is a sorted run file and the entries it holds; a run with to > 0 is
// the part of the file's bytes in [from, to).
type run struct {
	name     string
	entries  int64
	from, to int64
}

// runFile yields the entries of a run file, and closes it at its end.
type runFile[T any] struct {
	f    *os.File
	r    *bufio.Reader
	read func(*bufio.Reader) (T, error)
}

func openRun[T any](c runCodec[T], r run) (*runFile[T], error) {
	f, err := os.Open(r.name)
	if err != nil {
		return nil, err
	}
	var src io.Reader = f
	if r.to > 0 {
		src = io.NewSectionReader(f, r.from, r.to-r.from)
	}
	return &runFile[T]{f: f, r: bufio.NewReaderSize(src, runReadBuffer), read: c.read}, nil
}

func (r *runFile[T]) next() (T, error) {
	e, err := r.read(r.r)
	if err != nil {
		r.close()
	}
	return e, err
}

func (r *runFile[T]) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// writeRun writes the entries each yields to a new run file.
func writeRun[T any](c runCodec[T], name string, each func(emit func(T) error) error) (run, error) {
	f, err := os.Create(name)
	if err != nil {
		return run{}, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var n int64
	err = each(func(e T) error {
		c.write(w, e)
		n++
		return nil
	})
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return run{}, fmt.Errorf("writing run %s: %w", name, err)
	}
	return run{name: name, entries: n}, nil
}

// mergeSources calls emit for every entry of srcs, in order; of equal
// entries, those of earlier sources first.
func mergeSources[T any](srcs []source[T], compare func(a, b T) int, emit func(T) error) error {
	h := &mergeHeap[T]{compare: compare}
	for i, s := range srcs {
		e, err := s.next()
		if err == io.EOF {
			continue
		}
		if err != nil {
			return err
		}
		h.items = append(h.items, mergeItem[T]{e, s, i})
	}
	heap.Init(h)
	for len(h.items) > 0 {
		top := &h.items[0]
		if err := emit(top.e); err != nil {
			return err
		}
		e, err := top.src.next()
		if err == io.EOF {
			heap.Pop(h)
			continue
		}
		if err != nil {
			return err
		}
		top.e = e
		heap.Fix(h, 0)
	}
	return nil
}

type mergeItem[T any] struct {
	e   T
	src source[T]
	ord int
}

type mergeHeap[T any] struct {
	items   []mergeItem[T]
	compare func(a, b T) int
}

func (h *mergeHeap[T]) Len() int { return len(h.items) }
func (h *mergeHeap[T]) Less(i, j int) bool {
	a, b := &h.items[i], &h.items[j]
	return cmp.Or(h.compare(a.e, b.e), cmp.Compare(a.ord, b.ord)) < 0
}
func (h *mergeHeap[T]) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *mergeHeap[T]) Push(x any)    { h.items = append(h.items, x.(mergeItem[T])) }
func (h *mergeHeap[T]) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

// mergeRuns calls emit for every entry of the runs and of mem (sorted), in
// order, with at most mergeFanIn run files open at once: while there are
// more, the smallest runs are merged into bigger ones first (as few
// entries rewritten as can be: Huffman's order). Entries that compare equal
// come in an order that depends on the runs alone. The runs are removed as
// they are merged.
func mergeRuns[T any](c runCodec[T], dir, prefix string, runs []run, mem []T, emit func(T) error) error {
	runs, err := reduceRuns(c, dir, prefix, runs)
	if err != nil {
		return err
	}
	return mergeFiles(c, runs, mem, emit)
}

// reduceRuns merges the smallest of runs until at most mergeFanIn are
// left, and returns those.
func reduceRuns[T any](c runCodec[T], dir, prefix string, runs []run) ([]run, error) {
	runs = slices.Clone(runs)
	for seq := 0; len(runs) > mergeFanIn; seq++ {
		// Merging k runs into one removes k-1; merge just enough of the
		// smallest to leave mergeFanIn (but at least two at a time).
		k := min(mergeFanIn, len(runs)-mergeFanIn+1)
		order := make([]int, len(runs))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(runs[a].entries, runs[b].entries) })
		pick := order[:k]
		slices.Sort(pick)
		var group []run
		for _, i := range pick {
			group = append(group, runs[i])
		}
		name := filepath.Join(dir, fmt.Sprintf("%s-merged%04d", prefix, seq))
		merged, err := writeRun(c, name, func(emit func(T) error) error {
			return mergeFiles(c, group, nil, emit)
		})
		if err != nil {
			return nil, err
		}
		for _, r := range group {
			os.Remove(r.name)
		}
		runs[pick[0]] = merged
		for _, i := range slices.Backward(pick[1:]) {
			runs = slices.Delete(runs, i, i+1)
		}
	}
	return runs, nil
}

// mergeFiles merges run files and mem, all open at once.
func mergeFiles[T any](c runCodec[T], runs []run, mem []T, emit func(T) error) error {
	var srcs []source[T]
	var files []*runFile[T]
	defer func() {
		for _, f := range files {
			f.close()
		}
	}()
	for _, r := range runs {
		f, err := openRun(c, r)
		if err != nil {
			return err
		}
		files = append(files, f)
		srcs = append(srcs, f)
	}
	if len(mem) > 0 {
		srcs = append(srcs, &sliceSource[T]{s: mem})
	}
	return mergeSources(srcs, c.compare, emit)
}
