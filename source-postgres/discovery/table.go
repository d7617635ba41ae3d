package discovery

import (
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5"

	"pgcapture/source-postgres/document"
	"pgcapture/source-postgres/pgtypes"
)

// Table is a capturable table.
type Table struct {
	// OID is the table's pg_class OID, which pgoutput Relation messages
	// carry as the relation ID.
	OID    uint32
	Schema string
	Name   string
	// Columns are the table's columns in attnum order, generated columns
	// included.
	Columns []*Column
	// Key names the key columns in key order: the primary key's; else those
	// of a unique index (IsFallbackKey); else none (Keyless).
	Key           []string
	IsFallbackKey bool
	Keyless       bool
	// Partitioned is true for the root of a partitioned table.
	Partitioned bool
	// ReplicaIdentity is pg_class.relreplident: 'd' (default: the primary
	// key), 'f' (full), 'i' (an index) or 'n' (nothing).
	ReplicaIdentity byte
	// Polled marks the result of a polled table or query (query.go): its
	// documents' _meta names the poll that read them.
	Polled bool
	// RowFilter is the capture's publication's WHERE clause for the table
	// (PostgreSQL 15+), or "": the backfill reads only the rows the
	// publication streams.
	RowFilter string
}

// Column is a column of a table.
type Column struct {
	Name string
	// Position is the attnum, counting from 1; dropped columns leave gaps.
	Position int
	Type     *pgtypes.Type
	// TypeName is the type as the server's format_type prints it, modifier
	// included: "character varying(20)", "public.geometry(Point,4326)".
	TypeName string
	NotNull  bool
	// Generated marks a generated column, stored or (PostgreSQL 18)
	// virtual.
	Generated bool
	// Virtual marks a virtual generated column (PostgreSQL 18, where it is
	// the default kind), which pgoutput never sends, whatever
	// publish_generated_columns says, and no column list may name.
	Virtual bool
	// Unpublished marks a column the capture's publication does not
	// publish: one left out of its column list (PostgreSQL 15+), or a
	// generated column, unless the publication publishes those
	// (publish_generated_columns, PostgreSQL 18) or lists it by name (18).
	// Documents leave it out, or a backfilled value could never be kept
	// current.
	Unpublished bool
	// Collation is the column's collation name, "" for a type without one.
	Collation string
	// Comment is the column's COMMENT, if any.
	Comment string

	// bytewiseCollation is the quoted, qualified collation name when the
	// collation orders text by bytes ("C", "POSIX"), so that key ordering
	// needs no COLLATE clause; "" otherwise.
	bytewiseCollation string
	// jsonType is Type, or for a key column Type.AsKey().
	jsonType *pgtypes.Type
}

// MetaField is document.MetaField, the document member that holds the
// capture's metadata.
const MetaField = document.MetaField

// InDocuments reports whether documents carry the column. They leave out
// the columns the publication does not publish (Unpublished), and a column
// named _meta, whose value would collide with the document's metadata.
// Both paths, backfill and replication, must leave out the same columns.
func (c *Column) InDocuments() bool {
	return !c.Unpublished && c.Name != MetaField
}

// JSONType returns the type whose AppendJSON and Schema give the column's
// document value. It is Type, except for a key column whose JSON form could
// not be a collection key (a float, json or array key column), which is
// emitted as a string of its text output.
func (c *Column) JSONType() *pgtypes.Type {
	if c.jsonType != nil {
		return c.jsonType
	}
	return c.Type
}

// KeyOrderExpr returns the SQL expression by which backfill queries order
// the column and compare it in a row comparison.
func (c *Column) KeyOrderExpr() string {
	return c.Type.KeyOrderExpr(pgx.Identifier{c.Name}.Sanitize(), c.bytewiseCollation)
}

// BytewiseCollation reports whether the column's collation orders text by
// bytes ("C", "POSIX"), as key ordering does.
func (c *Column) BytewiseCollation() bool { return c.bytewiseCollation != "" }

// KeyParamExpr returns the placeholder $n, cast to compare with
// KeyOrderExpr: `$3::int8`, `$1::text COLLATE "C"`.
func (c *Column) KeyParamExpr(n int) string {
	return c.Type.KeyParamExpr(n, c.bytewiseCollation)
}

// AppendKey appends the column's element of a row key, given the value's
// text output. Keys compare with bytes.Compare exactly as KeyOrderExpr
// orders rows. HOT PATH.
func (c *Column) AppendKey(dst, text []byte) ([]byte, error) {
	return c.Type.AppendKey(dst, text)
}

// KeyParam returns the parameter text for KeyParamExpr from an element
// that sqlcapture.DecodeKey returned for a key built by AppendKey.
func (c *Column) KeyParam(elem any) (string, error) {
	return c.Type.KeyParam(elem)
}

// QuotedName returns the table's schema-qualified name quoted for SQL.
func (t *Table) QuotedName() string {
	return pgx.Identifier{t.Schema, t.Name}.Sanitize()
}

// RecommendedName returns "schema/table" as a Flow collection name: case is
// preserved and every character other than a letter, a digit, '-', '_' or
// '.' becomes '_'.
func (t *Table) RecommendedName() string {
	return collectionNamePart(t.Schema) + "/" + collectionNamePart(t.Name)
}

func collectionNamePart(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// KeyPointers returns the JSON pointers of the collection key: the key
// columns, or for a keyless table the document's source location, which
// is unique per change.
func (t *Table) KeyPointers() []string {
	if len(t.Key) == 0 {
		return []string{"/_meta/source/loc/0", "/_meta/source/loc/1", "/_meta/source/loc/2"}
	}
	pointers := make([]string, len(t.Key))
	for i, name := range t.Key {
		pointers[i] = "/" + escapePointer(name)
	}
	return pointers
}

// escapePointer escapes a JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// column returns the column with the given name.
func (t *Table) column(name string) *Column {
	for _, c := range t.Columns {
		if c.Name == name {
			return c
		}
	}
	return nil
}
