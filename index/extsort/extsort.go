// Package extsort sorts byte records in bounded memory: records are held
// in memory up to a budget, then sorted and written as a run to a
// temporary file; Each merges the runs (at most FanIn at a time, merging
// runs into longer ones first when there are more) with what is still in
// memory. The sort is stable: records that compare equal come out in the
// order they were added.
//
// Temporary files are created 0600 and unlinked at once (only the open
// descriptor keeps them), so nothing is left behind, even by a process
// that is killed.
package extsort

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// DefaultBudget is the memory a Sorter holds records in by default.
const DefaultBudget = 16 << 20

// FanIn bounds the runs merged at once (open files, and their read
// buffers: FanIn × 64 KiB).
const FanIn = 16

// perRecord is the memory a record costs besides its bytes (its place in
// the index that is sorted).
const perRecord = 16

// MaxRecord bounds a record's length.
const MaxRecord = 1 << 30

// Sorter sorts records; the zero value is not usable (see New).
type Sorter struct {
	cmp    func(a, b []byte) int
	dir    string
	budget int
	arena  []byte
	recs   []loc
	runs   []run // oldest first
	spills int
	closed bool
}

// run is a sorted run in a temporary file; a run of level l+1 is the
// merge of FanIn runs of level l.
type run struct {
	f     *os.File
	level int
}

// loc is where a record lies in the arena.
type loc struct{ off, n int }

// New returns a Sorter of records ordered by cmp, holding up to budget
// bytes in memory (0: DefaultBudget) and spilling to temporary files in
// dir ("": os.TempDir()).
func New(cmp func(a, b []byte) int, budget int, dir string) *Sorter {
	if budget <= 0 {
		budget = DefaultBudget
	}
	return &Sorter{cmp: cmp, dir: dir, budget: budget}
}

// Add copies rec into the sorter.
func (s *Sorter) Add(rec []byte) error {
	if s.closed {
		return errors.New("extsort: Add after Each or Close")
	}
	if len(rec) > MaxRecord {
		return fmt.Errorf("extsort: record of %d bytes", len(rec))
	}
	if len(s.arena)+len(rec)+perRecord*(len(s.recs)+1) > s.budget && len(s.recs) > 0 {
		if err := s.spill(); err != nil {
			return err
		}
	}
	if need := len(s.arena) + len(rec); need > cap(s.arena) {
		// Grow as append would, but not past the budget: the memory held
		// stays within it.
		grown := make([]byte, len(s.arena), max(need, min(2*cap(s.arena), s.budget)))
		copy(grown, s.arena)
		s.arena = grown
	}
	s.recs = append(s.recs, loc{len(s.arena), len(rec)})
	s.arena = append(s.arena, rec...)
	return nil
}

// Len is the number of records held in memory now.
func (s *Sorter) Len() int { return len(s.recs) }

// Spills counts the runs written to temporary files so far (merges of
// runs included).
func (s *Sorter) Spills() int { return s.spills }

func (s *Sorter) rec(l loc) []byte { return s.arena[l.off : l.off+l.n] }

func (s *Sorter) sortMemory() {
	slices.SortStableFunc(s.recs, func(a, b loc) int { return s.cmp(s.rec(a), s.rec(b)) })
}

// spill writes the records in memory as a sorted run.
func (s *Sorter) spill() error {
	s.sortMemory()
	f, err := s.create()
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	for _, l := range s.recs {
		if err := writeRecord(w, s.rec(l)); err != nil {
			f.Close()
			return fmt.Errorf("extsort: writing a run in %s: %w", s.tempDir(), err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("extsort: writing a run in %s: %w", s.tempDir(), err)
	}
	s.runs = append(s.runs, run{f, 0})
	s.spills++
	s.recs, s.arena = s.recs[:0], s.arena[:0]
	// FanIn runs of one level make one of the next, as in a log-structured
	// merge: each record is rewritten once per level, and the runs stay
	// fewer than FanIn per level.
	for n := len(s.runs); n >= FanIn && s.runs[n-FanIn].level == s.runs[n-1].level; n = len(s.runs) {
		if err := s.mergeLast(FanIn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sorter) tempDir() string {
	if s.dir == "" {
		return os.TempDir()
	}
	return s.dir
}

// create makes an unlinked temporary file.
func (s *Sorter) create() (*os.File, error) {
	f, err := os.CreateTemp(s.dir, "xffidx-sort-*")
	if err != nil {
		return nil, fmt.Errorf("extsort: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("extsort: %w", err)
	}
	return f, nil
}

// mergeLast merges the last n runs (consecutive, so the order of equal
// records is kept) into one, a level above the highest of them.
func (s *Sorter) mergeLast(n int) error {
	f, err := s.create()
	if err != nil {
		return err
	}
	from := s.runs[len(s.runs)-n:]
	level := 0
	for _, r := range from {
		level = max(level, r.level+1)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	err = s.merge(from, nil, func(rec []byte) error { return writeRecord(w, rec) })
	if err == nil {
		err = w.Flush()
	}
	for _, r := range from {
		r.f.Close()
	}
	s.runs = s.runs[:len(s.runs)-n]
	if err != nil {
		f.Close()
		return fmt.Errorf("extsort: merging runs in %s: %w", s.tempDir(), err)
	}
	s.runs = append(s.runs, run{f, level})
	s.spills++
	return nil
}

func writeRecord(w *bufio.Writer, rec []byte) error {
	var n [binary.MaxVarintLen64]byte
	if _, err := w.Write(n[:binary.PutUvarint(n[:], uint64(len(rec)))]); err != nil {
		return err
	}
	_, err := w.Write(rec)
	return err
}

// Each calls fn with every record, in order; rec is valid only during the
// call. fn returning an error stops the walk with it. The sorter can be
// used no more afterwards (Close releases it).
func (s *Sorter) Each(fn func(rec []byte) error) error {
	if s.closed {
		return errors.New("extsort: Each after Each or Close")
	}
	s.closed = true
	defer s.Close()
	s.sortMemory()
	if len(s.runs) == 0 {
		for _, l := range s.recs {
			if err := fn(s.rec(l)); err != nil {
				return err
			}
		}
		return nil
	}
	for len(s.runs) >= FanIn {
		if err := s.mergeLast(FanIn); err != nil {
			return err
		}
	}
	return s.merge(s.runs, s.recs, fn)
}

// Close releases the memory and the temporary files.
func (s *Sorter) Close() error {
	s.closed = true
	for _, r := range s.runs {
		r.f.Close()
	}
	s.runs, s.recs, s.arena = nil, nil, nil
	return nil
}

// source is one sorted input of a merge: a run file, or the sorted
// records in memory (the newest, so last).
type source struct {
	r    *bufio.Reader
	mem  []loc
	cur  []byte
	buf  []byte
	rank int // order of the source: ties go to the lower
}

func (s *Sorter) next(src *source) (bool, error) {
	if src.r == nil {
		if len(src.mem) == 0 {
			return false, nil
		}
		src.cur, src.mem = s.rec(src.mem[0]), src.mem[1:]
		return true, nil
	}
	n, err := binary.ReadUvarint(src.r)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if n > MaxRecord {
		return false, fmt.Errorf("a record of %d bytes in a run", n)
	}
	if cap(src.buf) < int(n) {
		src.buf = make([]byte, n)
	}
	src.cur = src.buf[:n]
	if _, err := io.ReadFull(src.r, src.cur); err != nil {
		return false, fmt.Errorf("a run ends inside a record: %w", err)
	}
	return true, nil
}

type sourceHeap struct {
	s    *Sorter
	srcs []*source
}

func (h *sourceHeap) Len() int { return len(h.srcs) }
func (h *sourceHeap) Less(i, j int) bool {
	if c := h.s.cmp(h.srcs[i].cur, h.srcs[j].cur); c != 0 {
		return c < 0
	}
	return h.srcs[i].rank < h.srcs[j].rank
}
func (h *sourceHeap) Swap(i, j int) { h.srcs[i], h.srcs[j] = h.srcs[j], h.srcs[i] }
func (h *sourceHeap) Push(x any)    { h.srcs = append(h.srcs, x.(*source)) }
func (h *sourceHeap) Pop() any {
	x := h.srcs[len(h.srcs)-1]
	h.srcs = h.srcs[:len(h.srcs)-1]
	return x
}

// merge calls fn with the records of runs (and of mem, sorted, added after
// them) in order.
func (s *Sorter) merge(runs []run, mem []loc, fn func([]byte) error) error {
	h := &sourceHeap{s: s}
	for i, r := range runs {
		src := &source{r: bufio.NewReaderSize(io.NewSectionReader(r.f, 0, 1<<62), 64<<10), rank: i}
		ok, err := s.next(src)
		if err != nil {
			return fmt.Errorf("extsort: reading a run: %w", err)
		}
		if ok {
			h.srcs = append(h.srcs, src)
		}
	}
	if len(mem) > 0 {
		src := &source{mem: mem, rank: len(runs)}
		s.next(src)
		h.srcs = append(h.srcs, src)
	}
	heap.Init(h)
	for h.Len() > 0 {
		src := h.srcs[0]
		if err := fn(src.cur); err != nil {
			return err
		}
		ok, err := s.next(src)
		if err != nil {
			return fmt.Errorf("extsort: reading a run: %w", err)
		}
		if ok {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	return nil
}
