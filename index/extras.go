package index

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
)

// extras collects a file's keys other than hits (request records, stored
// values, the connection state), in any order, and hands them back sorted.
// Past extrasSpill bytes they are sorted and written to a run file, so that a
// capture with millions of request records does not hold them in memory.
type extras struct {
	dir   string
	spill int // bytes held before a spill; 0: extrasSpill
	kvs   []kv
	bytes int
	runs  []run
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
	if x.bytes > cmp.Or(x.spill, extrasSpill) {
		return x.spillRun()
	}
	return nil
}

func compareKV(a, b kv) int {
	if c := bytes.Compare(a.key, b.key); c != 0 {
		return c
	}
	return a.seq - b.seq
}

func (x *extras) spillRun() error {
	slices.SortFunc(x.kvs, compareKV)
	r, err := writeRun(kvCodec, filepath.Join(x.dir, fmt.Sprintf("extras%04d", len(x.runs))), func(emit func(kv) error) error {
		for _, e := range x.kvs {
			emit(e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	x.runs = append(x.runs, r)
	x.kvs, x.bytes = x.kvs[:0], 0
	return nil
}

// each calls fn for every key in order, once, with the value added last.
func (x *extras) each(fn func(key, val []byte) error) error {
	slices.SortFunc(x.kvs, compareKV)
	var pending kv
	some := false
	err := mergeRuns(kvCodec, x.dir, "extras", x.runs, x.kvs, func(e kv) error {
		if some && !bytes.Equal(pending.key, e.key) {
			if err := fn(pending.key, pending.val); err != nil {
				return err
			}
		}
		pending, some = e, true
		return nil
	})
	if err != nil || !some {
		return err
	}
	return fn(pending.key, pending.val)
}

// kvCodec reads and writes extras in run files: uvarint key length, value
// length and order of addition, then the key and the value.
var kvCodec = runCodec[kv]{
	compare: compareKV,
	read: func(r *bufio.Reader) (kv, error) {
		kl, err := binary.ReadUvarint(r)
		if err != nil {
			return kv{}, err // io.EOF at a record boundary
		}
		vl, err1 := binary.ReadUvarint(r)
		seq, err2 := binary.ReadUvarint(r)
		if err := errors.Join(err1, err2); err != nil || kl > 1<<20 || vl > 1<<30 {
			return kv{}, errors.New("extras run file is corrupt")
		}
		e := kv{key: make([]byte, kl), val: make([]byte, vl), seq: int(seq)}
		if _, err := io.ReadFull(r, e.key); err != nil {
			return kv{}, errors.New("extras run file cut short")
		}
		if _, err := io.ReadFull(r, e.val); err != nil {
			return kv{}, errors.New("extras run file cut short")
		}
		return e, nil
	},
	write: func(w *bufio.Writer, e kv) {
		var n [3 * binary.MaxVarintLen64]byte
		b := binary.AppendUvarint(n[:0], uint64(len(e.key)))
		b = binary.AppendUvarint(b, uint64(len(e.val)))
		b = binary.AppendUvarint(b, uint64(e.seq))
		w.Write(b)
		w.Write(e.key)
		w.Write(e.val)
	},
}
