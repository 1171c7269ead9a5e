package ingest

import (
	"path/filepath"
	"sync"

	"github.com/xffidx/xffidx/format/compressed"
)

// Several compressed captures at once.
//
// A deflate stream decodes on one core, so a build of several compressed
// captures walks up to Options.Workers of them at once, each on a goroutine
// of its own. Everything but the walk runs under the session's lock and in
// build order: the decision what to do with a file (its catalog entry, its
// file id), and its commit, which waits until every file before it is done.
// So the index, the file ids and the reports are those of a build that
// indexes the files one after the other. A capture that may continue the
// connections of the previous file of its directory (a rotation, see
// session.previous) waits for the files before it in that directory that
// may be that one, before it takes their state up. Uncompressed captures
// (walked by all the workers already), a path met twice, and a capture
// whose entry moves to it (a rename) wait for every file before them. The
// Store is only used under the lock.

// fileTurn is one capture of a build that walks several at once.
type fileTurn struct {
	k    int
	path string
	dir  string
	// started is closed when the capture's decisions are made (its walk
	// begins, or it needs none): the next capture may then decide.
	started   chan struct{}
	startOnce sync.Once
	// headKnown is closed once first is set: the capture's first packet
	// time (0: none, or unknown).
	headKnown chan struct{}
	headOnce  sync.Once
	first     int64
	// done is closed when the capture is committed (or failed) and every
	// capture before it is done.
	done    chan struct{}
	result  FileResult
	stopped bool // the index failed as a whole at or before this capture
	// replaces is set, before started is closed, when the capture has a
	// catalog entry: its old entry stays in the session until it commits.
	replaces bool
}

func (t *fileTurn) start() { t.startOnce.Do(func() { close(t.started) }) }

func (t *fileTurn) setFirst(first int64) {
	t.headOnce.Do(func() {
		t.first = first
		close(t.headKnown)
	})
}

// indexAtOnce indexes captures as indexAll does, walking up to par
// compressed ones at once.
func (s *session) indexAtOnce(captures []string, par int, done func(FileResult)) {
	turns := make([]*fileTurn, len(captures))
	for k, c := range captures {
		turns[k] = &fileTurn{k: k, path: c, dir: filepath.Dir(c), started: make(chan struct{}), headKnown: make(chan struct{}), done: make(chan struct{})}
	}
	s.turns, s.atOnce = turns, min(par, len(turns))
	defer func() { s.turns, s.atOnce = nil, 0 }()

	// Reports go out in build order as the captures are done.
	launched := make(chan *fileTurn, len(turns))
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		stop := false
		for t := range launched {
			<-t.done
			if stop = stop || t.stopped; !stop {
				done(t.result)
			}
		}
	}()

	slots := make(chan struct{}, par)
	for k, t := range turns {
		slots <- struct{}{}
		alone := containerOf(t.path) == ""
		for _, e := range turns[:k] {
			alone = alone || e.path == t.path
		}
		if alone && k > 0 {
			<-turns[k-1].done // and so every capture before it
		}
		// After the wait: a capture before it may have failed the index.
		s.mu.Lock()
		stopped := s.stop != nil
		s.mu.Unlock()
		if stopped {
			break
		}
		launched <- t
		go func() {
			defer func() { <-slots }()
			s.mu.Lock()
			s.turn = t
			r := s.indexFile(t.path)
			s.turn = nil
			s.mu.Unlock()
			t.start()
			t.setFirst(0)
			if k > 0 {
				<-turns[k-1].done
			}
			s.mu.Lock()
			t.result, t.stopped = r, s.halted(r)
			s.mu.Unlock()
			close(t.done)
		}()
		<-t.started
	}
	close(launched)
	<-reported
}

// waitEarlier waits, in a build walking several captures at once, for the
// captures before the one holding the lock to be done. A capture with a
// catalog entry waits so before it decides anything: those before it may
// still read that entry (a rename moves it), and their commits move the
// catalog's entries in memory, so a pointer to one taken before the wait
// would name another file after it. It returns the error that stopped the
// build meanwhile, if one did. Called with the lock held.
func (s *session) waitEarlier() error {
	t := s.turn
	if t == nil || t.k == 0 {
		return nil
	}
	s.turn = nil
	s.mu.Unlock()
	<-s.turns[t.k-1].done
	s.mu.Lock()
	s.turn = t
	return s.stop
}

// frameDecoders is how many frames of one zstd or lz4 capture are decoded
// at once: the workers, shared out among the captures walked at once, so
// that the decoders (up to 16 MiB each) do not grow with the square of the
// workers.
func (s *session) frameDecoders(workers int) int {
	return max(1, workers/max(1, s.atOnce))
}

// walkUnlocked runs fs's walk without the session's lock when the build
// walks several captures at once and fs is a compressed one read from its
// start, then waits for the captures before it to be done and takes the
// lock again. Called with the lock held.
func (s *session) walkUnlocked(fs *fileScan) error {
	t := s.turn
	if t == nil || fs.codec == compressed.None || fs.resume != nil {
		return fs.run()
	}
	fs.turn = t
	s.turn = nil
	s.mu.Unlock()
	t.start()
	err := fs.run()
	if t.k > 0 {
		<-s.turns[t.k-1].done
	}
	s.mu.Lock()
	s.turn = t
	if err == nil && s.stop != nil {
		err = s.stop // the index failed meanwhile: nothing more is written
	}
	return err
}

// waitPredecessors waits, for a capture walked without the session's lock
// whose first packet is at first (Unix ns), for the captures before it in
// its directory that may be the one it continues (see session.previous):
// those whose first packet is not later than its own, and those replacing
// a catalog entry.
func (s *session) waitPredecessors(t *fileTurn, first int64) {
	t.setFirst(first)
	for _, e := range s.turns[:t.k] {
		if e.dir != t.dir {
			continue
		}
		<-e.headKnown
		// One with an entry may be the predecessor by its old entry,
		// which a build one file after the other would not see.
		if e.first == 0 || first == 0 || e.first <= first || e.replaces {
			<-e.done
		}
	}
}
