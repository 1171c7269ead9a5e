package query_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/xffidx/xffidx/format/capgen"
	"github.com/xffidx/xffidx/query"
)

// TestFastDecodeEqualsPacketDecode: DecodeFrame, whose common frames take
// gopacket's DecodingLayerParser, answers every frame as the
// gopacket.Packet walk does (5-tuple, payload, error): every frame of the
// corpus, of generated captures in every link type with tunnels, VLANs,
// IPv6 and snap lengths, and those frames cut short and with bytes
// flipped.
func TestFastDecodeEqualsPacketDecode(t *testing.T) {
	var recs []decRecord
	corpusFiles, _ := filepath.Glob("../testdata/corpus/*.pcap*")
	for _, p := range corpusFiles {
		recs = append(recs, decReadCapture(t, p)...)
	}
	dir := t.TempDir()
	for i, cfg := range []capgen.Config{
		{Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, Tunnels: true, IPv6Transport: true},
		{Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, VLAN: true, QinQ: true, Tunnels: true},
		{Format: capgen.FormatPcap, LinkType: capgen.LinkEthernet, SnapLen: 120},
		{Format: capgen.FormatPcap, LinkType: capgen.LinkSLL},
	} {
		cfg.Seed, cfg.Variants, cfg.TargetBytes, cfg.NoTruth = int64(40+i), true, 512<<10, true
		path, _ := genCapture(t, dir, fmt.Sprintf("g%d.pcap", i), cfg)
		recs = append(recs, decReadCapture(t, path)...)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	n := len(recs)
	for _, r := range recs[:n] {
		if len(r.data) > 20 {
			cut := decRecord{r.linkType, r.data[:rng.IntN(len(r.data))]}
			flip := decRecord{r.linkType, bytes.Clone(r.data)}
			flip.data[rng.IntN(len(flip.data))] ^= byte(1 + rng.IntN(255))
			recs = append(recs, cut, flip)
		}
	}
	fast := 0
	reused := query.ReusedFrameDecoder()
	rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	for i, r := range recs {
		wft, wpayload, werr := query.DecodeFrameLayers(r.linkType, r.data)
		for _, decode := range []func(uint32, []byte) (query.FiveTuple, []byte, error){query.DecodeFrame, reused} {
			ft, payload, err := decode(r.linkType, r.data)
			if ft != wft || !bytes.Equal(payload, wpayload) || fmt.Sprint(err) != fmt.Sprint(werr) {
				t.Fatalf("frame %d (link type %d, %d bytes): %+v %d bytes %v; the packet walk: %+v %d bytes %v", i, r.linkType, len(r.data), ft, len(payload), err, wft, len(wpayload), werr)
			}
		}
		err := werr
		if err == nil && r.linkType == 1 {
			fast++
		}
	}
	if fast < 1000 {
		t.Errorf("only %d Ethernet frames decoded", fast)
	}
	t.Logf("%d frames compared, %d Ethernet TCP frames", len(recs), fast)
}
