// Package query answers "which connections carried this client address": it
// looks the address up in the index, reads only the packet records the index
// points at (one pread each, in file and offset order), decodes them with
// gopacket and reports one row per packet.
package query

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/xffidx/xffidx/format"
	"github.com/xffidx/xffidx/format/xff"
	"github.com/xffidx/xffidx/index"
)

// Row is one packet whose values of one forwarding header hold a looked-up
// address.
type Row struct {
	XFFIP   netip.Addr
	XFF     []byte // raw value(s) of Header, several lines joined with ", "
	Header  xff.Header
	File    string
	Offset  int64
	TS      time.Time
	TSDigit int // fractional second digits the capture records
	FiveTuple
	Request // the request that carried the XFF line (query time)
	// FileID is the capture's id in the index, Pos the address's position
	// in the header's list (0: left-most), as the index records them.
	FileID uint32
	Pos    int
	// Provisional: the packet's request was still open where the capture
	// ended when it was indexed, so a build of the grown capture may give
	// this row another value or request.
	Provisional bool
	// Sensor names the sensor that holds the packet, in answers from a
	// central store (package fleet); empty in a local query's.
	Sensor string
	// conn is where the build says the connection started (its SYN when
	// connSYN; -1 unknown): --write starts there.
	conn    int64
	connSYN bool
}

// FileProblem says why the hits of one file could not be read.
type FileProblem struct {
	Path string
	Hits int
	Err  error
}

func (p FileProblem) Error() string {
	return fmt.Sprintf("%s: %v (%d indexed hits not shown)", p.Path, p.Err, p.Hits)
}

// Result of a look-up: its rows and its Summary.
type Result struct {
	Rows []Row
	Summary
}

// Summary is what a search reports besides its rows.
type Summary struct {
	Matched  int              // rows passed on
	Files    []index.FileInfo // the catalog entries of the hits' captures (for Export)
	Problems []FileProblem    // files that vanished or changed since indexing
	// Undecided counts hits --client-only left out because their request's
	// XFF list could not be read whole (see Options.ClientOnly).
	Undecided int
	// FewerHeaders lists the captures searched that an older xffidx
	// indexed for X-Forwarded-For alone, when other headers were asked
	// for: a build of them reads them again.
	FewerHeaders []string
	// Spills counts the sorted runs written to temporary files.
	Spills int
	// Decompressed counts the uncompressed bytes decoded to read packets
	// of compressed captures, from Restarts restart points.
	Decompressed int64
	Restarts     int
}

// ErrChanged says a capture is not the file that was indexed.
var ErrChanged = errors.New("changed since it was indexed (its size, modification time or contents differ); run `xffidx build` again")

// Lookup finds every packet whose XFF values hold an address in prefixes.
func Lookup(store *index.Store, prefixes []netip.Prefix) (Result, error) {
	return Search(store, Options{Prefixes: prefixes})
}

// recordReader reads single packet records of one file at stored offsets.
type recordReader struct {
	store  *index.Store // for the restart points of compressed captures
	c      *capture
	info   *index.FileInfo
	buf    []byte // the file's bytes from bufOff on
	bufOff int64
	sum    *Summary // counts what decompressing cost
}

func (r *recordReader) close() {
	if r.c != nil {
		if r.sum != nil {
			r.c.cost(r.sum)
		}
		r.c.close()
		r.c = nil
	}
}

func (r *recordReader) open(info *index.FileInfo) error {
	r.close()
	c, err := openCapture(r.store, info)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("no longer exists")
		}
		return err
	}
	st, err := c.f.Stat()
	if err != nil {
		c.close()
		return err
	}
	if s := index.StateOf(info, index.IdentityOf(st)); s != index.StateOK && s != index.StateGrown {
		// A grown capture (records appended, the start unchanged) still
		// holds every indexed record where it was.
		c.close()
		return ErrChanged
	}
	r.c, r.info, r.buf = c, info, r.buf[:0]
	return nil
}

// readWindow is the first read at an offset: it holds a typical packet
// record, and often the next hits' records too.
const readWindow = 4 << 10

// record reads the packet record at off, from the bytes of the last read
// when they hold it.
func (r *recordReader) record(off int64) (format.Record, error) {
	sec, ok := r.info.SectionAt(off)
	if !ok {
		return format.Record{}, fmt.Errorf("offset %d precedes the first section", off)
	}
	kind := format.KindPcap
	if r.info.Format == format.KindPcapNG.String() {
		kind = format.KindPcapNG
	}
	w := format.Walker{Kind: kind, Sec: *sec}
	if off >= r.bufOff && off < r.bufOff+int64(len(r.buf)) {
		rec, _, st := w.Peek(r.buf, r.bufOff, int(off-r.bufOff))
		if st == format.Packet {
			return rec, nil
		}
	}
	for size := readWindow; ; {
		n := int(min(int64(size), r.info.DataEnd()-off))
		if n <= 0 {
			return format.Record{}, fmt.Errorf("offset %d is past the end of the file", off)
		}
		if cap(r.buf) < n {
			r.buf = make([]byte, n)
		}
		r.buf = r.buf[:n]
		got, err := r.c.src.ReadAt(r.buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return format.Record{}, err
		}
		r.buf, r.bufOff = r.buf[:got], off
		rec, _, st := w.Peek(r.buf, off, 0)
		switch {
		case st == format.Packet:
			return rec, nil
		case st == format.Short && size == readWindow && int64(n) < r.info.DataEnd()-off:
			// A record larger than the first read: read what it claims.
			if need, ok := w.SizeAt(r.buf, 0); ok && need > size {
				size = need
				continue
			}
		}
		return format.Record{}, fmt.Errorf("no packet record at offset %d", off)
	}
}

// joinedValues re-reads the lines of header h of a packet the way the build
// did.
func joinedValues(payload []byte, h xff.Header) []byte {
	res := xff.ScanRequests(payload, nil)
	var out []byte
	n := 0
	for _, l := range res.Lines {
		if l.Header != h {
			continue
		}
		if n++; n > 1 {
			out = append(out, ", "...)
		}
		out = append(out, l.Value...)
	}
	return bytes.Clone(out[:min(len(out), xff.MaxValue)])
}

// tsDigits is the number of fractional-second digits the record's
// timestamp resolution gives.
func tsDigits(info *index.FileInfo, off int64, rec format.Record) int {
	sec, ok := info.SectionAt(off)
	if !ok || int(rec.Iface) >= len(sec.Ifaces) {
		return 9
	}
	resol := sec.Ifaces[rec.Iface].TSResol
	if resol&0x80 != 0 || resol > 9 {
		return 9
	}
	return int(resol)
}
