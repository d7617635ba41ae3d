package protocol

import "testing"

func TestStateKey(t *testing.T) {
	for _, tc := range []struct {
		name     string
		path     []string
		backfill uint32
		want     string
	}{
		{"plain", []string{"public", "users"}, 0, "public%2Fusers"},
		{"backfill counter", []string{"public", "users"}, 1, "public%2Fusers.v1"},
		{"backfill counter, two digits", []string{"public", "users"}, 12, "public%2Fusers.v12"},
		{"largest backfill counter", []string{"s", "t"}, 4294967295, "s%2Ft.v4294967295"},
		{"space and percent", []string{"my schema", "100%"}, 0, "my%20schema%2F100%25"},
		{"kept punctuation", []string{"a-b_c+d.e=f", "g:h"}, 0, "a-b_c+d.e=f%2Fg%3Ah"},
		{"slash inside a name", []string{"a/b", "c"}, 0, "a%2Fb%2Fc"},
		{"quotes", []string{`q"uo'te`}, 0, "q%22uo%27te"},
		{"Latin letters with diacritics", []string{"mağaza", "Ürün"}, 0, "mağaza%2FÜrün"},
		{"Cyrillic", []string{"схема", "таблица"}, 3, "схема%2Fтаблица.v3"},
		{"CJK", []string{"日本語"}, 0, "日本語"},
		// Devanagari vowel signs (U+093F, U+0940) and the anusvara
		// (U+0902) are marks, not letters, but Other_Alphabetic: the
		// runtime keeps them.
		{"Other_Alphabetic marks", []string{"public", "हिंदी"}, 0, "public%2Fहिंदी"},
		{"Arabic fatha, Other_Alphabetic", []string{"كَتب"}, 0, "كَتب"},
		{"circled letter, Other_Alphabetic", []string{"ⓐ"}, 0, "ⓐ"},
		// A combining accent that is not Other_Alphabetic is encoded: a
		// decomposed name does not keep its state under the composed key.
		{"combining acute accent", []string{"Cafe\u0301"}, 0, "Cafe%CC%81"},
		{"composed é", []string{"Café"}, 0, "Café"},
		{"numbers of every kind", []string{"٣", "Ⅻ", "½"}, 0, "٣%2FⅫ%2F½"},
		{"emoji", []string{"emoji😀"}, 2, "emoji%F0%9F%98%80.v2"},
		{"control character", []string{"a\tb"}, 0, "a%09b"},
		{"empty path", nil, 0, ""},
	} {
		if got := StateKey(tc.path, tc.backfill); got != tc.want {
			t.Errorf("%s: StateKey(%q, %d) = %q, want %q", tc.name, tc.path, tc.backfill, got, tc.want)
		}
	}
}
