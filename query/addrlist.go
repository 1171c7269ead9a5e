package query

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// ParseAddr reads an address in any spelling, brackets and zone dropped,
// IPv4-mapped IPv6 as IPv4 (as the index stores it).
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}, err
	}
	return a.WithZone("").Unmap(), nil
}

// ParsePrefix reads a CIDR prefix, or a single address as a full-length
// one. Host bits are cleared (10.1.2.3/8 is 10.0.0.0/8); an IPv4-mapped
// IPv6 prefix of at least 96 bits is the IPv4 prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not an address or CIDR prefix")
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not a CIDR prefix (want ADDR/BITS)")
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// maxListLine bounds a line of an address list: the longest IPv6 prefix
// with a zone and a comment fits many times over, and a longer line (a
// file that is not a list) is reported without being held whole.
const maxListLine = 4096

// BadLine is a line of an address list that is neither an address nor a
// CIDR prefix.
type BadLine struct {
	Name string // the list's name: its path, or "stdin"
	Line int    // 1-based
	Text string // the line as read (its first 64 bytes): print it through Sanitize
	Why  string
}

func (e *BadLine) Error() string {
	return fmt.Sprintf("%s:%d: %s: \"%s\"", e.Name, e.Line, e.Why, e.Text)
}

// ReadAddrList reads a list of addresses and CIDR prefixes, one a line,
// as ParsePrefix reads them (so a firewall's export, a threat feed or a
// NAT pool can be given as it is): leading and trailing blanks are
// ignored, and so are blank lines, lines starting with '#' and anything
// after a '#' (a comment); CRLF line ends and a UTF-8 byte order mark are
// accepted. A bad line is a *BadLine naming the list and the line number:
// the first one is returned as the error, unless skip is set, when each is
// passed to skip and the reading goes on (skip returning an error stops
// it). A line longer than 4 KiB is a bad line.
func ReadAddrList(r io.Reader, name string, skip func(*BadLine) error) ([]netip.Prefix, error) {
	br := bufio.NewReaderSize(r, maxListLine)
	var out []netip.Prefix
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		tooLong := false
		for errors.Is(err, bufio.ErrBufferFull) {
			// Keep the start for the message; pass over the rest.
			tooLong = true
			line = bytes.Clone(line[:min(len(line), 64)])
			_, err = br.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		if n == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
		}
		text := line
		if i := bytes.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = bytes.TrimSpace(text)
		var bad *BadLine
		switch {
		case tooLong:
			bad = &BadLine{Name: name, Line: n, Text: string(line), Why: fmt.Sprintf("longer than %d bytes: not an address list", maxListLine)}
		case len(text) > 0:
			p, perr := ParsePrefix(string(text))
			if perr != nil {
				bad = &BadLine{Name: name, Line: n, Text: string(text[:min(len(text), 64)]), Why: perr.Error()}
			} else {
				out = append(out, p)
			}
		}
		if bad != nil {
			if skip == nil {
				return out, bad
			}
			if serr := skip(bad); serr != nil {
				return out, serr
			}
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
	}
}
