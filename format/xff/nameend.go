package xff

// The build's hot loop looks at every byte of every packet for the names of
// the forwarding headers: "x-forwarded-for:", "forwarded:", "x-real-ip:",
// "true-client-ip:" and "cf-connecting-ip:", in any case. A single byte is a
// poor anchor: ':' and '-' are common in text, and any byte is 1 in 256 of a
// binary payload. The colon that ends a name, together with the bytes just
// before it, is a good one: every spelling of the five names ends in "-for:",
// "-ip:" or "ed:", and a colon with those bytes before it is rare both in
// binary payloads (1 in 2 million positions) and in HTML, CSS and JSON text.
// indexNameEnd finds such an ending; it is only a prefilter, and the caller
// verifies the full name before it (so "Last-Modified:" is found, and then
// rejected). On amd64 with AVX2 it tests 32 positions per step.
//
// A match at position i is:
//
//	b[i+4] == ':' && (
//		(b[i] == '-' && b[i+3]|0x20 == 'r') ||   // "-for:"
//		(b[i+1] == '-' && b[i+3]|0x20 == 'p') || // "-ip:"
//		(b[i+2]|0x20 == 'e' && b[i+3]|0x20 == 'd')) // "ed:"

// nameEndSpan is the number of bytes a match covers, from b[i] to the colon.
const nameEndSpan = 5

// indexNameEndGeneric returns the first i at which a name ending matches, or
// -1.
func indexNameEndGeneric(b []byte) int {
	for i := 0; i+nameEndSpan <= len(b); i++ {
		if b[i+4] != ':' {
			continue
		}
		switch b[i+3] | 0x20 {
		case 'r':
			if b[i] == '-' {
				return i
			}
		case 'p':
			if b[i+1] == '-' {
				return i
			}
		case 'd':
			if b[i+2]|0x20 == 'e' {
				return i
			}
		}
	}
	return -1
}
