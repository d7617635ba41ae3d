package discovery

import (
	"slices"
	"testing"
)

func TestQuoteIdent(t *testing.T) {
	for in, want := range map[string]string{
		"users":     `"users"`,
		"Users":     `"Users"`,
		`we"ird`:    `"we""ird"`,
		"select":    `"select"`,
		"a b.c":     `"a b.c"`,
		`""`:        `""""""`,
		"données_ü": `"données_ü"`,
	} {
		if got := QuoteIdent(in); got != want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", in, got, want)
		}
	}
	tbl := &Table{Schema: "My Schema", Name: `t"1`}
	if got, want := tbl.QuotedName(), `"My Schema"."t""1"`; got != want {
		t.Errorf("QuotedName() = %s, want %s", got, want)
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
