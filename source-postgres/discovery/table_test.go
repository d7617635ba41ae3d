package discovery

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestIdentifierQuoting pins the output of pgx.Identifier.Sanitize, the one
// quoting rule of the connector, for the names it quotes: it must keep case,
// reserved words, dots, spaces, quotes and non-ASCII letters as written.
func TestIdentifierQuoting(t *testing.T) {
	for _, tc := range []struct {
		parts pgx.Identifier
		want  string
	}{
		{pgx.Identifier{"users"}, `"users"`},
		{pgx.Identifier{"Users"}, `"Users"`},
		{pgx.Identifier{`we"ird`}, `"we""ird"`},
		{pgx.Identifier{"select"}, `"select"`},
		{pgx.Identifier{"a b.c"}, `"a b.c"`},
		{pgx.Identifier{`""`}, `""""""`},
		{pgx.Identifier{"données_ü"}, `"données_ü"`},
		{pgx.Identifier{"日本"}, `"日本"`},
		{pgx.Identifier{"My Schema", `t"1`}, `"My Schema"."t""1"`},
		{pgx.Identifier{"public", "a.b"}, `"public"."a.b"`},
		// PostgreSQL names cannot hold NUL, and config refuses it in the
		// names it quotes, so pgx's dropping of NUL never applies.
		{pgx.Identifier{"a\x00b"}, `"ab"`},
	} {
		if got := tc.parts.Sanitize(); got != tc.want {
			t.Errorf("pgx.Identifier%q.Sanitize() = %s, want %s", []string(tc.parts), got, tc.want)
		}
		if len(tc.parts) == 2 {
			tbl := &Table{Schema: tc.parts[0], Name: tc.parts[1]}
			if got := tbl.QuotedName(); got != tc.want {
				t.Errorf("QuotedName() of %q = %s, want %s", []string(tc.parts), got, tc.want)
			}
		}
	}
}

func TestRecommendedName(t *testing.T) {
	tests := []struct{ schema, name, want string }{
		{"public", "users", "public/users"},
		{"Sales", "OrderItems", "Sales/OrderItems"},
		{"my schema", "a/b~c", "my_schema/a_b_c"},
		{"public", "v1.2-final_x", "public/v1.2-final_x"},
		{"données", "tâble", "données/tâble"},
		{"public", `we"ird$`, "public/we_ird_"},
	}
	for _, tc := range tests {
		tbl := &Table{Schema: tc.schema, Name: tc.name}
		if got := tbl.RecommendedName(); got != tc.want {
			t.Errorf("RecommendedName(%q, %q) = %q, want %q", tc.schema, tc.name, got, tc.want)
		}
	}
}

func TestKeyPointers(t *testing.T) {
	tests := []struct {
		key  []string
		want []string
	}{
		{[]string{"id"}, []string{"/id"}},
		{[]string{"a/b", "c~d", "Mixed Case"}, []string{"/a~1b", "/c~0d", "/Mixed Case"}},
		{nil, []string{"/_meta/source/loc/0", "/_meta/source/loc/1", "/_meta/source/loc/2"}},
	}
	for _, tc := range tests {
		tbl := &Table{Key: tc.key}
		if got := tbl.KeyPointers(); !slices.Equal(got, tc.want) {
			t.Errorf("KeyPointers(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func TestAnchor(t *testing.T) {
	tests := []struct{ schema, name, want string }{
		{"public", "users", "PublicUsers"},
		{"my_schema", "order items", "MySchemaOrderItems"},
		{"1x", "2y", "Table1x2y"},
		{"données", "tâble", "DonnEsTBle"},
		{"_", "-", "Table"},
	}
	for _, tc := range tests {
		tbl := &Table{Schema: tc.schema, Name: tc.name}
		if got := tbl.anchor(); got != tc.want {
			t.Errorf("anchor(%q, %q) = %q, want %q", tc.schema, tc.name, got, tc.want)
		}
	}
}
