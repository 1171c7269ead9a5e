package capgen

import (
	"fmt"
	"net/netip"
)

type scenKind uint8

// Connection kinds. kBulk and kTLS are the background traffic; the others
// are the Variants scenarios, each written three times (rounds 0, 1, 2,
// which vary details).
const (
	kBulk       scenKind = iota
	kTLS                 // port 443, not HTTP
	kChain               // "a, b, c[, d]"
	kNoSpace             // "a,b"
	kLowerName           // "x-forwarded-for:" (round 1 without space after the colon)
	kUpperName           // "X-FORWARDED-FOR:" / "X-Forwarded-for:"
	kWhitespace          // tabs and extra spaces around the value and the commas
	kTwoLines            // two XFF lines in one request
	kPipelined           // 2-3 GET requests in one segment, each with its own XFF
	kPorts               // "1.2.3.4:5678", "[2001:db8::1]:443", "[2001:db8::x]"
	kV6Spell             // "2001:0DB8:0:0:0:0:0:1", upper case, "::ffff:192.0.2.5", "::ffff:c000:205"
	kLeadZero            // "10.000.000.03" and other zero-padded IPv4
	kNonAddr             // "unknown", "_hidden", empty element, "${jndi:ldap://x}"
	kSplitValue          // XFF line split inside its value across two segments
	kSplitOdd            // split inside the header name / right after the colon / between CR and LF
	kSplitHdrs           // header block over two segments, XFF wholly in the second
	kEcho                // decoy: XFF text in a response body (echo), also at the start of its 2nd segment
	kPostJSON            // decoy: XFF text in a JSON POST body
	kPostLog             // decoy: uploaded log with "X-Forwarded-For: " lines; a body segment starts with one
	kLookalike           // decoy: X-Original-Forwarded-For, X-Forwarded-Host, X-Real-IP, X-Forwarded-For-Test, Forwarded, text in User-Agent
	kRespHdr             // decoy: X-Forwarded-For in a response header block
	kSnapCut             // XFF line cut by the snap length after its first comma (only with a small SnapLen)
	numKinds
)

var kindNames = [numKinds]string{
	"bulk", "tls", "chain", "nospace", "lowername", "uppername", "whitespace", "twolines",
	"pipelined", "ports", "v6spell", "leadzero", "nonaddr", "splitvalue", "splitodd",
	"splithdrs", "echo", "postjson", "postlog", "lookalike", "resphdr", "snapcut",
}

func (k scenKind) String() string { return kindNames[k] }

const rounds = 3

func (g *gen) buildScenarios() {
	var kinds []scenKind
	for k := kChain; k < numKinds; k++ {
		if k == kSnapCut && !g.snapSmall {
			continue
		}
		kinds = append(kinds, k)
	}
	for range rounds {
		for i := len(kinds) - 1; i > 0; i-- {
			j := g.r.intn(i + 1)
			kinds[i], kinds[j] = kinds[j], kinds[i]
		}
		g.scen = append(g.scen, kinds...)
	}
}

func (g *gen) plan(c *conn, kind scenKind) {
	if kind == kSnapCut {
		// Short headers so that the XFF line can reach the cut.
		g.setPath(c, tunNone, false, c.cli.Port())
		if c.capPay < 60 {
			kind = kBulk
		}
	}
	c.kind = kind
	c.round = g.scenCount[kind]
	g.scenCount[kind]++
	port := uint16(8080)
	switch {
	case kind == kTLS:
		port = 443
	case g.r.intn(10) < 3:
		port = 80
	}
	g.setServer(c, port)
	g.handshake(c)
	switch kind {
	case kBulk:
		g.planBulk(c)
	case kTLS:
		g.planTLS(c)
	default:
		g.planScenario(c, kind)
	}
	g.closeConn(c)
	g.commit(c)
}

func (g *gen) v4tail() netip.Addr {
	if g.r.intn(2) == 0 {
		return netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + g.r.intn(254))})
	}
	return netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + g.r.intn(254))})
}

// getReq starts a GET request with the usual headers before the XFF line.
func (g *gen) getReq(path string) {
	g.resetReq()
	g.req("GET", path, nil)
	g.hdr("User-Agent", userAgents[g.r.intn(len(userAgents))])
	g.hdr("Accept", "*/*")
}

func (g *gen) smallResp(c *conn) { g.binResponse(c, 1+g.r.intn(3), false) }

func (g *gen) planScenario(c *conn, kind scenKind) {
	r := c.round % rounds
	switch kind {
	case kChain:
		g.getReq("/api/v1/chain")
		g.xff("X-Forwarded-For", " ", "")
		g.addr(g.r.clientAddr())
		g.addr(g.r.proxyAddr())
		g.addr(g.r.proxyAddr())
		if r == 2 {
			g.addr(g.r.proxyAddr())
		}
		g.hdr("X-Forwarded-Proto", "https")
		g.addRequest(c)
		g.smallResp(c)

	case kNoSpace:
		g.getReq("/api/v1/nospace")
		g.xff("X-Forwarded-For", " ", "")
		g.el(ekPlain, g.r.clientAddr(), 0, "", ",")
		g.el(ekPlain, g.r.proxyAddr(), 0, "", ",")
		if r == 1 {
			g.el(ekPlain, g.r.proxyAddr(), 0, "", ",")
		}
		g.addRequest(c)
		g.smallResp(c)

	case kLowerName:
		g.getReq("/lower")
		pre := " "
		if r == 1 {
			pre = ""
		}
		g.xff("x-forwarded-for", pre, "")
		g.addr(g.r.clientAddr())
		if r != 0 {
			g.addr(g.r.proxyAddr())
		}
		g.addRequest(c)
		g.smallResp(c)

	case kUpperName:
		g.getReq("/upper")
		name := "X-FORWARDED-FOR"
		if r == 2 {
			name = "X-Forwarded-for"
		}
		g.xff(name, " ", "")
		g.addr(g.r.clientAddr())
		g.addr(g.r.proxyAddr())
		g.addRequest(c)
		g.smallResp(c)

	case kWhitespace:
		g.getReq("/ws")
		pre := [...]string{"\t", "   ", " \t "}[r]
		sep := [...]string{" ,\t", "\t,\t", " ,"}[r]
		post := [...]string{" ", "\t", "  \t"}[r]
		g.xff("X-Forwarded-For", pre, post)
		g.el(ekPlain, g.r.clientAddr(), 0, "", sep)
		g.el(ekPlain, g.r.proxyAddr(), 0, "", sep)
		g.addr(g.r.proxyAddr())
		g.addRequest(c)
		g.smallResp(c)

	case kTwoLines:
		g.getReq("/two")
		g.xff("X-Forwarded-For", " ", "")
		g.addr(g.r.clientAddr())
		g.addr(g.r.proxyAddr())
		g.hdr("Accept-Language", "en-US,en;q=0.5")
		name := "X-Forwarded-For"
		if r == 1 {
			name = "x-forwarded-for"
		}
		g.xff(name, " ", "")
		g.addr(g.r.proxyAddr())
		if r == 2 {
			g.addr(g.r.proxyAddr())
		}
		g.addRequest(c)
		g.smallResp(c)

	case kPipelined:
		g.resetReq()
		n := 2 + r%2
		for i := 0; i < n; i++ {
			g.req("GET", bulkPaths[g.r.intn(len(bulkPaths))], nil)
			g.hdr("User-Agent", "pipeline/1.0")
			g.xff("X-Forwarded-For", " ", "")
			g.addr(g.r.clientAddr())
			if i == 1 {
				g.addr(g.r.proxyAddr())
			}
		}
		g.addRequest(c)
		for i := 0; i < n; i++ {
			g.smallResp(c)
		}

	case kPorts:
		g.getReq("/ports")
		g.xff("X-Forwarded-For", " ", "")
		switch r {
		case 0:
			g.el(ekPort, g.v4tail(), uint16(1024+g.r.intn(60000)), "", "")
			g.el(ekPort, netip.MustParseAddr("2001:db8::1"), 443, "", "")
		case 1:
			g.el(ekPort, g.r.tailV6(), uint16(1024+g.r.intn(60000)), "", "")
			g.el(ekPort, g.v4tail(), 5678, "", "")
		default:
			g.el(ekPort, g.r.tailV6(), 0, "", "")
			g.el(ekPort, g.v4tail(), 80, "", "")
			g.addr(g.r.proxyAddr())
		}
		g.addRequest(c)
		g.smallResp(c)

	case kV6Spell:
		g.getReq("/v6")
		g.xff("X-Forwarded-For", " ", "")
		switch r {
		case 0:
			g.el(ekV6Upper, netip.MustParseAddr("2001:db8::1"), 0, "", "")
			g.el(ekMapped, netip.AddrFrom4([4]byte{192, 0, 2, 5}), 0, "", "")
		case 1:
			g.el(ekV6UpperShort, g.r.tailV6(), 0, "", "")
			g.el(ekMapped, g.v4tail(), 0, "::FFFF:", "")
			g.el(ekV6Upper, g.r.tailV6(), 0, "", "")
		default:
			g.el(ekMappedHex, g.v4tail(), 0, "", "")
			g.el(ekV6Upper, g.r.tailV6(), 0, "", "")
		}
		g.addRequest(c)
		g.smallResp(c)

	case kLeadZero:
		g.getReq("/zeros")
		g.xff("X-Forwarded-For", " ", "")
		if r == 0 {
			g.el(ekLeadZero, netip.AddrFrom4([4]byte{10, 0, 0, 3}), 0, "10.000.000.03", "")
		}
		g.el(ekLeadZero, g.v4tail(), uint16(1+g.r.intn(15)), "", "")
		if r == 2 {
			g.el(ekLeadZero, netip.AddrFrom4([4]byte{198, 51, 100, 7}), 0, "198.051.100.007", "")
		}
		g.addRequest(c)
		g.smallResp(c)

	case kNonAddr:
		g.getReq("/nonaddr")
		g.xff("X-Forwarded-For", " ", "")
		lits := [3]string{"unknown", "_hidden", "${jndi:ldap://x}"}
		g.lit(lits[r])
		g.addr(g.r.clientAddr())
		g.el(ekLit, netip.Addr{}, 0, lits[(r+1)%3], ",")
		g.el(ekLit, netip.Addr{}, 0, "", ",") // empty element: "x,,y"
		g.addr(g.r.proxyAddr())
		g.lit(lits[(r+2)%3])
		g.addRequest(c)
		g.smallResp(c)

	case kSplitValue:
		g.getReq("/split")
		h := g.xff("X-Forwarded-For", " ", "")
		g.addr(g.r.clientAddr())
		g.addr(g.r.proxyAddr())
		g.addr(g.r.proxyAddr())
		g.hdr("X-Forwarded-Proto", "https")
		g.sp[0] = splitSpec{kind: spValue, h: h}
		g.addRequest(c)
		g.smallResp(c)

	case kSplitOdd:
		g.getReq("/split-odd")
		h := g.xff("X-Forwarded-For", " ", "")
		g.addr(g.r.clientAddr())
		g.addr(g.r.proxyAddr())
		g.hdr("X-Forwarded-Proto", "https")
		switch r {
		case 0:
			g.sp[0] = splitSpec{kind: spName, h: h, k: 7} // "X-Forwa" | "rded-For: ..."
		case 1:
			g.sp[0] = splitSpec{kind: spAfterColon, h: h}
		default:
			g.sp[0] = splitSpec{kind: spAfterCR, h: h}
		}
		g.addRequest(c)
		g.smallResp(c)

	case kSplitHdrs:
		g.getReq("/split-headers")
		al := g.hdr("Accept-Language", "en-US,en;q=0.5")
		h := g.xff("X-Forwarded-For", " ", "")
		g.addr(g.r.clientAddr())
		if r != 1 {
			g.addr(g.r.proxyAddr())
		}
		g.hdr("X-Forwarded-Proto", "https")
		if r == 2 {
			// The first segment ends inside the previous header line.
			g.sp[0] = splitSpec{kind: spName, h: al, k: 11}
		} else {
			g.sp[0] = splitSpec{kind: spBeforeHdr, h: h}
		}
		g.addRequest(c)
		g.smallResp(c)

	case kEcho:
		g.getReq("/echo")
		g.xff("X-Forwarded-For", " ", "")
		g.addr(g.r.clientAddr())
		g.addRequest(c)
		body, split := g.echoBody(c, r == 0)
		cut := g.textResponse(c, "200 OK", "text/plain", body, split)
		if r == 0 {
			c.markDecoy(cut)
		}

	case kPostJSON:
		d := [4]netip.Addr{g.r.decoyAddr(), g.r.decoyAddr(), g.r.decoyAddr(), g.r.decoyAddr()}
		body := fmt.Appendf(nil, `{"event":"login","headers":{"X-Forwarded-For":"%s, %s","X-Real-IP":"%s"},`+
			`"raw":"GET / HTTP/1.1\r\nX-Forwarded-For: %s\r\n\r\n"}`, d[0], d[1], d[2], d[3])
		g.resetReq()
		g.req("POST", "/api/events", body)
		g.hdr("User-Agent", userAgents[2])
		g.hdr("Content-Type", "application/json")
		if r != 1 {
			g.xff("X-Forwarded-For", " ", "")
			g.addr(g.r.clientAddr())
		}
		g.addRequest(c)
		g.textResponse(c, "201 Created", "application/json", []byte(`{"ok":true}`), -1)

	case kPostLog:
		body, at := g.logBody(r == 0)
		g.resetReq()
		g.req("POST", "/upload/access.log", body)
		g.hdr("User-Agent", userAgents[2])
		g.hdr("Content-Type", "text/plain")
		g.xff("X-Forwarded-For", " ", "")
		g.addr(g.r.clientAddr())
		g.addr(g.r.proxyAddr())
		// Round 0: the header block ends exactly at the end of the first
		// segment and the body segment starts with "X-Forwarded-For: ".
		// Otherwise a later body segment starts inside such a line.
		g.sp[0] = splitSpec{kind: spBodyAt, h: 0, k: at}
		g.addRequest(c)
		if r == 0 {
			c.markDecoy(g.rs[0].bodyPos)
		}
		g.textResponse(c, "201 Created", "application/json", []byte(`{"stored":true}`), -1)

	case kLookalike:
		g.resetReq()
		g.req("GET", "/lookalike", nil)
		ua := "probe/1.0 (X-Forwarded-For: " + g.r.decoyAddr().String() + ")"
		g.hdr("User-Agent", ua)
		g.hdr("X-Original-Forwarded-For", g.r.decoyAddr().String()+", "+g.r.decoyAddr().String())
		g.hdr("X-Forwarded-Host", g.r.decoyAddr().String())
		g.hdr("X-Real-IP", g.r.decoyAddr().String())
		g.hdr("X-Forwarded-For-Test", g.r.decoyAddr().String())
		g.hdr("Forwarded", "for="+g.r.decoyAddr().String()+";proto=https")
		if r != 1 {
			g.xff("X-Forwarded-For", " ", "")
			g.addr(g.r.clientAddr())
		}
		g.hdr("Referer", "http://example.test/?h=X-Forwarded-For:%20"+g.r.decoyAddr().String())
		g.addRequest(c)
		g.smallResp(c)

	case kRespHdr:
		g.getReq("/resp-header")
		g.xff("X-Forwarded-For", " ", "")
		g.addr(g.r.clientAddr())
		g.addRequest(c)
		g.binResponse(c, 1+g.r.intn(2), true)

	case kSnapCut:
		g.resetReq()
		g.req("GET", "/s", nil)
		g.xff("X-Forwarded-For", " ", "")
		g.addr(g.v4tail())
		g.addr(g.v4tail())
		g.addr(g.r.proxyAddr())
		g.addr(g.v4tail())
		g.want = true
		g.addRequest(c)
		g.smallResp(c)
	}
}

// echoBody is what an echo service returns: a dump of a request whose XFF
// addresses are decoys, longer than one segment. split is the body offset
// where the second segment starts: the start of a decoy
// "X-Forwarded-For: " line when lineStart (tshark then parses that
// segment's lines as headers), else inside the address of such a line.
func (g *gen) echoBody(c *conn, lineStart bool) ([]byte, int) {
	b := fmt.Appendf(nil, "echo: request received\r\nGET /echo HTTP/1.1\r\nHost: %s\r\nX-Forwarded-For: %s, %s\r\nX-Real-IP: %s\r\n\r\n",
		g.host(c), g.r.decoyAddr(), g.r.decoyAddr(), g.r.decoyAddr())
	for i := 0; len(b) < 700; i++ {
		b = fmt.Appendf(b, "x-echo-pad-%d: %016x\r\n", i, g.r.u64())
	}
	split := len(b)
	if !lineStart {
		split += len("X-Forwarded-For: 100.")
	}
	b = fmt.Appendf(b, "X-Forwarded-For: %s\r\n", g.r.decoyAddr())
	for i := 0; len(b) < 1900; i++ {
		b = fmt.Appendf(b, "x-echo-tail-%d: %016x\r\nX-Forwarded-For: %s\r\n", i, g.r.u64(), g.r.decoyAddr())
	}
	return b, split
}

// logBody is an uploaded proxy log with "X-Forwarded-For: " lines holding
// decoy addresses. at is where a segment boundary goes: 0 when atStart
// (the body starts with such a line), else inside the address of a later
// one.
func (g *gen) logBody(atStart bool) ([]byte, int) {
	var b []byte
	at := -1
	if atStart {
		at = 0
	}
	for i := 0; len(b) < 2600; i++ {
		if at < 0 && len(b) >= 600 {
			at = len(b) + len("X-Forwarded-For: 100.")
		}
		b = fmt.Appendf(b, "X-Forwarded-For: %s\r\n2026-01-01T00:00:%02dZ %s POST /login 200 %d id=%012x\r\n",
			g.r.decoyAddr(), i%60, g.r.decoyAddr(), 100+g.r.intn(900), g.r.u64()>>16)
	}
	return b, at
}
