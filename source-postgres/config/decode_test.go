package config

import (
	"strings"
	"testing"
)

// Errors of a configuration file say where the problem is, as an editor
// counts lines and columns.
func TestParseErrorPositions(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"syntax error", "{\n  \"address\": \"db\",\n}", []string{"not valid JSON at line 3, column 1"}},
		{"leading spaces", "\n\n  {\"address\" \"db\"}", []string{"not valid JSON at line 3, column 14"}},
		{"unterminated", "{\"address\": \"db\"", []string{"not valid JSON at line 1, column 16"}},
		{"ill-typed value", "{\n  \"address\": \"db\",\n  \"advanced\": {\"backfill_chunk_size\": \"abc\"}\n}",
			[]string{`"advanced.backfill_chunk_size" must be an integer, got "abc" (line 3, column 39)`}},
		{"columns count characters", "{\"address\": \"d€\", \"user\": 5}", []string{`"user" must be a string, got 5 (line 1, column 27)`}},
		{"several at once", "{\n\"address\": 1,\n\"adress\": \"db\"\n}", //nolint:misspell // the typo is the unknown field under test
			[]string{`"address" must be a string, got 1 (line 2, column 12)`, `"adress" is not a known field`, `(line 3, column 11)`}}, //nolint:misspell // as above
		{"not an object", "{\"address\": \"db\",\n \"advanced\": []}", []string{`"advanced" must be a JSON object, got [] (line 2, column 14)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", tc.doc)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) = %q, want it to contain %q", tc.doc, err, w)
				}
			}
		})
	}
}
