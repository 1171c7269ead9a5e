package query

// DecodeFrameLayers is the gopacket.Packet path of DecodeFrame, for the
// tests that compare the two.
var DecodeFrameLayers = decodeFrameLayers

// ReusedFrameDecoder is DecodeFrame with one frameDecoder for every frame,
// as a search decodes them.
func ReusedFrameDecoder() func(linkType uint32, frame []byte) (FiveTuple, []byte, error) {
	var d frameDecoder
	return d.decode
}
