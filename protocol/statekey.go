package protocol

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// StateKey returns the key under which the Flow runtime keeps a binding's
// state, as it computes the stateKey of each binding it opens: the resource
// path joined with "/", every character percent-encoded as UTF-8 except
// those Rust's char::is_alphanumeric accepts and "-_+.=", then ".v<backfill>"
// when the backfill counter is not zero. For example ["public", "users"]
// gives "public%2Fusers", and with backfill 1 "public%2Fusers.v1".
//
// Anything that keys state without a runtime (the capture command's state
// file, tests, benchmarks) uses this function, so that its state is the one
// the runtime would hand back.
func StateKey(resourcePath []string, backfill uint32) string {
	var b strings.Builder
	for _, r := range strings.Join(resourcePath, "/") {
		if isStateKeyRune(r) {
			b.WriteRune(r)
			continue
		}
		var buf [utf8.UTFMax]byte
		for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
			const hex = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		}
	}
	if backfill > 0 {
		b.WriteString(".v")
		b.WriteString(strconv.FormatUint(uint64(backfill), 10))
	}
	return b.String()
}

// isStateKeyRune reports whether the runtime leaves r as it is. Rust's
// char::is_alphanumeric is the Unicode Alphabetic property (letters, letter
// numbers and Other_Alphabetic, such as the vowel signs of Indic scripts)
// or a numeric category; Go's letter and number classes lack only
// Other_Alphabetic.
func isStateKeyRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		strings.ContainsRune("-_+.=", r)
}
