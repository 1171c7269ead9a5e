package query_test

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/xffidx/xffidx/index"
	"github.com/xffidx/xffidx/ingest"
	"github.com/xffidx/xffidx/query"
)

// TestJumboRecord: a record larger than the query's first read (a 9000-byte
// jumbo frame) is read whole, after a small one.
func TestJumboRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jumbo.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	for i, size := range []int{200, 9000, 300} {
		req := "GET /x HTTP/1.1\r\nHost: h\r\nX-Pad: " + strings.Repeat("p", size) + "\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n"
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{10, 0, 0, 2}, DstIP: net.IP{10, 0, 1, 5}}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(40000 + i), DstPort: 8080, Seq: 1, ACK: true, PSH: true, Window: 512}
		tcp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(req)); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}, b)
	}
	f.Close()
	store := &index.Store{Dir: t.TempDir(), LockWait: time.Second}
	if r := (&ingest.Builder{Store: store}).IndexFile(path); r.Err != nil {
		t.Fatal(r.Err)
	}
	res, err := query.Lookup(store, []netip.Prefix{netip.MustParsePrefix("198.51.100.9/32")})
	if err != nil || len(res.Problems) > 0 {
		t.Fatal(err, res.Problems)
	}
	if len(res.Rows) != 3 {
		t.Fatalf("%d rows, want 3", len(res.Rows))
	}
	for i, r := range res.Rows {
		if r.SrcPort != uint16(40000+i) || string(r.XFF) != "198.51.100.9" || !r.TS.Equal(ts) {
			t.Errorf("row %d: %+v", i, r)
		}
	}
}
