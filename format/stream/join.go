package stream

import "slices"

// Parallel walks.
//
// A capture cut into chunks is walked by one logging Tracker per chunk,
// each starting with no state. A connection it has no state for is taken
// up where a sequential walk with no state would take it up (a SYN, or a
// segment that starts with a request line): its anchor. Every segment of a
// connection the chunk's tracker has no state for is logged (position,
// sequence numbers, where its payload is in the file), and the anchor
// notes how much of the log came before it.
//
// Join, on the tracker that holds the true state at the chunk's start (the
// sequential walk's state, built chunk by chunk in file order), makes the
// chunk's result what a sequential walk would have found:
//
//  1. For each connection the chunk took up, the logged segments before its
//     anchor are replayed on a copy of the true state (their payloads read
//     back from the file only where the state needs them: the continuation
//     of a header block begun in an earlier chunk). Then the anchor must be
//     one the true state would have handled exactly as no state does: no
//     state, or a SYN, or a request line at exactly the expected position of
//     a connection between requests (or not being followed) on its client
//     side. Then everything the chunk's tracker did from the anchor on is
//     what a sequential walk does, and its state for the connection becomes
//     the true one.
//  2. Connections the chunk never took up but the true state holds (a
//     header block or a body going on into this chunk) have their logged
//     segments replayed on the true state itself.
//
// If an anchor fails the check (a retransmission of a request from the
// previous chunk, a body segment that happens to start like a request) or
// the log overflowed where it mattered, Join reports it and changes nothing;
// the caller walks the chunk again sequentially on the true tracker. So the
// result equals one sequential walk for any chunking (ingest's
// TestChunkingDoesNotChangeResults).

// maxLogEntries bounds one chunk's log (48 bytes an entry: 12 MiB).
const maxLogEntries = 1 << 18

// anchorInfo is where a logging tracker took a connection up.
type anchorInfo struct {
	set    bool
	syn    bool
	dir    uint8
	serial uint32 // the connection's serial number in the chunk
	seq    uint32
	wire   uint32
	ts     int64
	off    int64
	logLen int // log entries before it
}

type logEntry struct {
	off, ts, pos int64
	seq, n, wire uint32
	id           uint32
	flags, dir   uint8
}

type chunkLog struct {
	entries []logEntry
	keys    []connKey // by id
	counts  []Counts  // by id: what the connection's segments added
	full    bool      // entries from fullAt on were not kept
	fullAt  int
	swept   bool // the tracker swept its table: counts may be misplaced
}

// add logs a segment and returns its index; past the bound it returns an
// index past the end (the log is full from there).
func (l *chunkLog) add(id uint32, s *segment) int {
	if len(l.entries) >= maxLogEntries {
		if !l.full {
			l.full, l.fullAt = true, len(l.entries)
		}
		return len(l.entries) + 1
	}
	l.entries = append(l.entries, logEntry{off: s.off, ts: s.ts, pos: s.pos, seq: s.seq, n: s.n, wire: s.wire, id: id, flags: s.flags, dir: s.dir})
	return len(l.entries) - 1
}

// Chunk is a logging tracker's result for Join.
type Chunk struct {
	conns table
	// freeConns: unused connection states for the next tracker that takes
	// this chunk as its spare.
	freeConns []*conn
	retired   []*conn
	log       chunkLog
	out       Output
	maxTS     int64
}

// TakeChunk hands over what a logging tracker found in its chunk and
// leaves it empty for the next. spare, if not nil, is a chunk Join is done
// with: its memory is used again.
func (t *Tracker) TakeChunk(spare *Chunk) *Chunk {
	ch := &Chunk{conns: t.conns, retired: t.retired, log: t.log, out: t.out, maxTS: t.maxTS}
	for i := range ch.log.counts {
		ch.out.Counts.add(ch.log.counts[i])
	}
	free := t.freeParsers // idle parsers: no connection refers to them
	freeConns := t.freeConns
	*t = *New(t.opt)
	t.cnt = &t.out.Counts
	t.freeParsers, t.freeConns = free, freeConns
	if spare != nil {
		clear(spare.conns.slots)
		t.conns.slots = spare.conns.slots
		t.log = chunkLog{entries: spare.log.entries[:0], keys: spare.log.keys[:0], counts: spare.log.counts[:0]}
		clear(spare.retired)
		t.retired = spare.retired[:0]
		t.freeConns = append(t.freeConns, spare.freeConns...)
		clear(spare.freeConns)
		spare.freeConns = spare.freeConns[:0]
		clear(spare.out.Requests)
		t.out = Output{Hits: spare.out.Hits[:0], Requests: spare.out.Requests[:0]}
	}
	return ch
}

// Connections returns how many connections the chunk's tracker saw.
func (ch *Chunk) Connections() int { return len(ch.log.keys) }

// Output returns what the chunk's tracker found (for a caller that must
// drop it when Join fails).
func (ch *Chunk) Output() *Output { return &ch.out }

// Join makes ch, the chunk that follows what t has walked, part of t's
// walk (see the top of this file). fetch reads n payload bytes at a file
// offset into buf. It reports false, having changed nothing, when the chunk
// must be walked again on t instead. ch's output is added to t's.
func (t *Tracker) Join(ch *Chunk, fetch func(pos int64, n int, buf []byte) ([]byte, error)) (bool, error) {
	keys := ch.log.keys
	j := &t.join
	j.reset(len(keys))
	first := j.first
	note := func(c *conn) {
		if a := first[c.id]; a == nil || c.anchor.logLen < a.logLen {
			first[c.id] = &c.anchor
		}
		j.incarnations = append(j.incarnations, c)
	}
	ch.conns.each(note)
	for _, c := range ch.retired {
		note(c)
	}
	for id, k := range keys {
		j.known[id] = t.get(k) != nil
	}
	for i := range ch.log.entries {
		if a := first[ch.log.entries[i].id]; a != nil && i < a.logLen {
			j.prefix[ch.log.entries[i].id] = true
		}
	}

	// 1. Connections taken up in the chunk that the true state knows: the
	// anchor is checked on the true state after the logged prefix, replayed
	// on a scratch tracker holding copies (where there is no prefix and the
	// check changes nothing, on the true state as it is). A connection whose
	// anchor fails is redone alone, from its logged segments, when it can
	// be (redoable); else the chunk must be walked again.
	scratched := false
	for id, k := range keys {
		a := first[id]
		if a == nil || !j.known[id] {
			continue
		}
		if ch.log.full && a.logLen > ch.log.fullAt {
			return false, nil
		}
		c := t.get(k)
		if !j.prefix[id] {
			expired := t.expired(c, a.ts)
			if clean, certain := cleanAsIs(c, a, expired); certain {
				if !clean {
					if !j.redoable(ch, uint32(id), c) {
						return false, nil
					}
					j.redo[id] = true
				} else if !a.syn && !expired {
					j.keepStart(a.serial, c)
				}
				continue
			}
		}
		j.scratched[id] = true
		scratched = true
	}
	var sc *Tracker
	for scratched {
		// The scratch tracker's findings are the true state's for the
		// prefixes it replays: replayed again without a connection that
		// turns out to need redoing.
		sc = j.scratch(t, fetch)
		for id, k := range keys {
			if j.scratched[id] && !j.redo[id] {
				sc.put(t.get(k).clone())
			}
		}
		for i := range ch.log.entries {
			e := &ch.log.entries[i]
			if a := first[e.id]; a == nil || i >= a.logLen || !j.scratched[e.id] || j.redo[e.id] {
				continue
			}
			s := e.segment()
			sc.handle(keys[e.id], &s)
		}
		if sc.ferr != nil {
			return false, sc.ferr
		}
		again := false
		for id, k := range keys {
			if !j.scratched[id] || j.redo[id] {
				continue
			}
			clean, live := sc.anchorClean(k, first[id])
			switch {
			case !clean && !j.redoable(ch, uint32(id), t.get(k)):
				return false, sc.ferr
			case !clean:
				j.redo[id], again = true, true
			case live != nil:
				j.keepStart(first[id].serial, live)
			}
		}
		if sc.ferr != nil {
			return false, sc.ferr
		}
		scratched = again
	}
	if ch.log.full {
		for id := range keys {
			if first[id] == nil && j.known[id] {
				return false, nil
			}
		}
	}

	// The chunk is accepted.
	if sc != nil {
		t.out.Hits = append(t.out.Hits, sc.out.Hits...)
		t.out.Requests = append(t.out.Requests, sc.out.Requests...)
		t.out.Counts.add(sc.out.Counts)
	}

	// 2. Connections the chunk never took up, and those redone: their
	// logged segments replayed on the true state.
	t.fetch, t.ferr = fetch, nil
	for i := range ch.log.entries {
		e := &ch.log.entries[i]
		if !j.redo[e.id] && (first[e.id] != nil || !j.known[e.id]) {
			continue
		}
		s := e.segment()
		t.handle(keys[e.id], &s)
	}
	t.fetch = nil
	if err := t.ferr; err != nil {
		return true, err
	}

	// The chunk's own findings (but the redone connections'), and its state
	// for what it took up. Where the true state kept a connection through
	// its anchor, the chunk's tracker took it up without knowing where it
	// started: say it.
	if j.redone(ch) {
		ch.out.Hits = slices.DeleteFunc(ch.out.Hits, func(h Hit) bool { return j.dropped[h.serial] })
		ch.out.Requests = slices.DeleteFunc(ch.out.Requests, func(r RequestInfo) bool { return j.dropped[r.serial] })
		for id := range keys {
			if j.redo[id] {
				ch.out.Counts.sub(ch.log.counts[id])
			}
		}
	}
	if len(j.starts) > 0 {
		for i := range ch.out.Hits {
			h := &ch.out.Hits[i]
			if st, ok := j.starts[h.serial]; ok {
				h.ConnStart, h.ConnSYN = st.start, st.syn
			}
		}
		fix := func(c *conn) {
			if st, ok := j.starts[c.serial]; ok {
				c.start, c.startSYN = st.start, st.syn
			}
		}
		ch.conns.each(fix)
	}
	t.out.Hits = append(t.out.Hits, ch.out.Hits...)
	t.out.Requests = append(t.out.Requests, ch.out.Requests...)
	t.out.Counts.add(ch.out.Counts)
	for id, k := range keys {
		if first[id] == nil || j.redo[id] {
			continue
		}
		var c *conn
		if sl := ch.conns.find(&k, k.hash()); sl != nil {
			c = sl.c
		}
		if c == nil {
			t.del(k)
			continue
		}
		c.anchor, c.id = anchorInfo{}, 0
		t.put(c)
	}
	t.maxTS = max(t.maxTS, ch.maxTS)
	if t.live >= t.sweepAt {
		t.sweep()
	}
	t.giveConns(ch)
	return true, nil
}

// giveConns passes some of t's unused connection states to ch, whose
// tracker will need new ones (ch's own states are t's now, or dropped).
func (t *Tracker) giveConns(ch *Chunk) {
	n := min(len(t.freeConns), 1024)
	ch.freeConns = append(ch.freeConns[:0], t.freeConns[len(t.freeConns)-n:]...)
	clear(t.freeConns[len(t.freeConns)-n:])
	t.freeConns = t.freeConns[:len(t.freeConns)-n]
}

// redoable reports whether the connection id of the chunk can be redone
// alone from its logged segments on the true state c: the log holds all
// of them (it is whole, and the chunk's tracker never swept its table,
// whose counts would then be misplaced), and the segments it did not log,
// the server's side of the connection as every one of its states there
// saw it, are the server's side for the true state too.
func (j *joinState) redoable(ch *Chunk, id uint32, c *conn) bool {
	if ch.log.full || ch.log.swept || c == nil {
		return false
	}
	for _, inc := range j.incarnations {
		if inc.id == id && inc.client != c.client {
			return false
		}
	}
	return true
}

// redone marks the serials of the chunk's connections being redone, whose
// findings are dropped; it reports whether there are any.
func (j *joinState) redone(ch *Chunk) bool {
	any := false
	for _, c := range j.incarnations {
		if j.redo[c.id] {
			if j.dropped == nil {
				j.dropped = map[uint32]bool{}
			}
			j.dropped[c.serial], any = true, true
		}
	}
	return any
}

// joinState is the memory Join uses again from chunk to chunk.
type joinState struct {
	first     []*anchorInfo // by id: the chunk's first anchor of the connection
	known     []bool        // the true state holds the connection
	prefix    []bool        // segments were logged before its anchor
	scratched []bool        // checked on the scratch tracker
	redo      []bool        // redone alone on the true state
	// incarnations: the chunk's connection states (a key may have several:
	// one dropped, another taken up later); dropped: the serials of those
	// redone.
	incarnations []*conn
	dropped      map[uint32]bool
	sc           *Tracker
	// starts: by the chunk's connection serial, where the true state says
	// the connection started.
	starts map[uint32]connStart
}

type connStart struct {
	start int64
	syn   bool
}

func (j *joinState) keepStart(serial uint32, c *conn) {
	if j.starts == nil {
		j.starts = map[uint32]connStart{}
	}
	j.starts[serial] = connStart{c.start, c.startSYN}
}

func (j *joinState) reset(n int) {
	if cap(j.first) < n {
		j.first, j.known, j.prefix, j.scratched, j.redo = make([]*anchorInfo, n), make([]bool, n), make([]bool, n), make([]bool, n), make([]bool, n)
	}
	j.first, j.known, j.prefix, j.scratched, j.redo = j.first[:n], j.known[:n], j.prefix[:n], j.scratched[:n], j.redo[:n]
	clear(j.first)
	clear(j.starts)
	clear(j.known)
	clear(j.prefix)
	clear(j.scratched)
	clear(j.redo)
	clear(j.dropped)
	clear(j.incarnations)
	j.incarnations = j.incarnations[:0]
}

// scratch returns the emptied scratch tracker.
func (j *joinState) scratch(t *Tracker, fetch func(pos int64, n int, buf []byte) ([]byte, error)) *Tracker {
	if j.sc == nil {
		j.sc = New(Options{IdleTimeout: t.opt.IdleTimeout, MaxConns: t.opt.MaxConns})
	}
	sc := j.sc
	if sc.live > 0 || sc.conns.n > 0 {
		clear(sc.conns.slots)
		sc.conns.n = 0
	}
	sc.live, sc.held, sc.ferr = 0, 0, nil
	sc.out = Output{Hits: sc.out.Hits[:0], Requests: sc.out.Requests[:0]}
	sc.fetch, sc.maxTS = fetch, t.maxTS
	return sc
}

// cleanAsIs decides the anchor check on the true state c without changing
// it, when it can (certain): the SYN of a connection with no request open,
// a request line for a connection silent past its timeout with none open, or
// one whose state handles it as no state would.
func cleanAsIs(c *conn, a *anchorInfo, expired bool) (clean, certain bool) {
	open := c.p != nil && c.p.req.on
	if a.syn || expired {
		return true, !open
	}
	if c.client != int8(a.dir) || len(c.held) > 0 {
		return false, true
	}
	switch c.mode {
	case modeIdle:
		return c.next == a.seq, true
	case modeDead:
		return !c.closed && seqLT(c.next, a.seq+a.wire), true
	}
	return false, true
}

// get returns the state of k (expired or not), nil if none.
func (t *Tracker) get(k connKey) *conn {
	if sl := t.conns.find(&k, k.hash()); sl != nil {
		return sl.c
	}
	return nil
}

// put installs c as the state of its key (of a tracker that does not log),
// in place of any it had.
func (t *Tracker) put(c *conn) {
	sl := t.conns.insert(&c.key, c.key.hash())
	if old := sl.c; old != nil {
		t.held -= old.heldSize
		if old != c {
			t.recycle(old)
		}
	} else {
		t.live++
	}
	sl.c, sl.client = c, c.client
	t.held += c.heldSize
}

// del forgets k's state (of a tracker that does not log).
func (t *Tracker) del(k connKey) {
	if c := t.get(k); c != nil {
		t.held -= c.heldSize
		t.live--
		t.conns.remove(&k, k.hash())
		t.recycle(c)
	}
}

func (e *logEntry) segment() segment {
	return segment{off: e.off, ts: e.ts, pos: e.pos, seq: e.seq, n: e.n, wire: e.wire, flags: e.flags, dir: e.dir}
}

// anchorClean applies the true state (in the scratch tracker, after the
// replayed prefix) to the anchor and reports whether it handles it as no
// state does. The side effects the true state has there (a timeout, a SYN
// ending an open request) are the scratch tracker's output.
// The connection whose state the true state keeps through a clean request
// anchor (live) has the true state's start, which the chunk's tracker could
// not know.
func (sc *Tracker) anchorClean(k connKey, a *anchorInfo) (clean bool, live *conn) {
	c := sc.lookup(k, a.ts)
	if c == nil {
		return true, nil
	}
	if a.syn {
		s := segment{off: a.off, ts: a.ts, seq: a.seq, wire: a.wire, flags: flagSYN, dir: a.dir}
		sc.handle(k, &s)
		return true, nil
	}
	if c.client != int8(a.dir) || len(c.held) > 0 {
		return false, nil
	}
	switch c.mode {
	case modeIdle:
		return c.next == a.seq, c
	case modeDead:
		return !c.closed && seqLT(c.next, a.seq+a.wire), c
	}
	return false, nil
}

// clone copies a connection's state, sharing nothing that either copy
// changes in place.
func (c *conn) clone() *conn {
	d := *c
	d.held = nil
	for _, h := range c.held {
		h.data = append([]byte(nil), h.data...)
		d.held = append(d.held, h)
	}
	d.seen = append([]seenAddr(nil), c.seen...)
	if c.p != nil {
		p := *c.p
		p.line.buf = append([]byte(nil), p.line.buf...)
		r := &p.req
		r.method = append([]byte(nil), r.method...)
		r.target = append([]byte(nil), r.target...)
		r.host = append([]byte(nil), r.host...)
		r.hitRecs = append([]int64(nil), r.hitRecs...)
		r.pendVal = append([]byte(nil), r.pendVal...)
		for h := range r.lists {
			r.lists[h] = append([]byte(nil), r.lists[h]...)
		}
		d.p = &p
	}
	return &d
}

// Logged returns how many segments the chunk's tracker logged.
func (ch *Chunk) Logged() int { return len(ch.log.entries) }
