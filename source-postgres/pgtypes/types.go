package pgtypes

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// SessionParams returns the run-time parameters every connection of the
// capture must set, replication connections included. They fix the text
// forms that AppendJSON and AppendKey parse, and keep the text output of a
// value identical on every connection, which key ordering relies on. Sent
// as startup parameters, they override the server's, database's and role's
// defaults.
func SessionParams() map[string]string {
	return map[string]string{
		"DateStyle":          "ISO, MDY",
		"TimeZone":           "UTC",
		"IntervalStyle":      "iso_8601",
		"extra_float_digits": "1",
		"bytea_output":       "hex",
		"client_encoding":    "UTF8",
		// money prints per lc_monetary ("1.234,50 €" under de_DE); the C
		// locale, which every server has, prints "$1,234.50" everywhere.
		"lc_monetary": "C",
	}
}

// Kind classifies a type by how it is built.
type Kind uint8

const (
	KindUnknown    Kind = iota // not in the registry; converted as text
	KindBase                   // a base type, built in or from an extension
	KindEnum                   // an enum
	KindDomain                 // a domain over Base
	KindArray                  // an array of Elem
	KindRange                  // a range
	KindMultirange             // a multirange
	KindComposite              // a composite (row) type
	KindPseudo                 // a pseudo-type such as record or void
)

var kindNames = [...]string{"unknown", "base", "enum", "domain", "array", "range", "multirange", "composite", "pseudo"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Type describes a PostgreSQL data type, possibly with a type modifier.
type Type struct {
	OID uint32
	// Name is the type as format_type prints it, with the modifier:
	// "character varying(20)", "numeric(10,2)", "integer[]".
	Name string
	// Namespace and Typname are the unquoted schema and pg_type name.
	Namespace string
	Typname   string
	Kind      Kind
	// Typmod is the type modifier (atttypmod), or -1 for none.
	Typmod int32
	// Elem is the element type of an array.
	Elem *Type
	// Base is the underlying type of a domain, with the domain's modifier.
	Base *Type
	// EnumLabels are an enum's labels in sort order, and EnumSortOrder their
	// pg_enum.enumsortorder values.
	EnumLabels    []string
	EnumSortOrder []float32

	codec     codec
	delim     byte               // array element delimiter
	enumOrder map[string]float32 // label → sort order
	// asText marks a key-column type whose value is emitted as its text;
	// see AsKey.
	asText bool
	enc    Encoding
}

// codec says how a type's text output becomes JSON.
type codec uint8

const (
	codecText codec = iota // a JSON string of the text
	codecBool
	codecInt
	codecFloat
	codecBytea
	codecJSON
	codecDate
	codecTime
	codecTimetz
	codecTimestamp
	codecTimestamptz
	codecArray
	codecDomain
)

// OIDs of the built-in types that pgx's pgtype does not name. Like all
// built-in OIDs they are fixed by PostgreSQL (pg_type.dat) and never change.
const (
	oidInt2Vector = 22 // int2vector, as in pg_index.indkey
	oidOIDVector  = 30 // oidvector, as in pg_proc.proargtypes
)

var builtinCodecs = map[uint32]codec{
	pgtype.BoolOID:        codecBool,
	pgtype.ByteaOID:       codecBytea,
	pgtype.Int8OID:        codecInt,
	pgtype.Int2OID:        codecInt,
	pgtype.Int4OID:        codecInt,
	pgtype.OIDOID:         codecInt,
	pgtype.JSONOID:        codecJSON,
	pgtype.JSONBOID:       codecJSON,
	pgtype.Float4OID:      codecFloat,
	pgtype.Float8OID:      codecFloat,
	pgtype.DateOID:        codecDate,
	pgtype.TimeOID:        codecTime,
	pgtype.TimetzOID:      codecTimetz,
	pgtype.TimestampOID:   codecTimestamp,
	pgtype.TimestamptzOID: codecTimestamptz,
}

// Registry holds the types of one database. It is read-only once loaded and
// safe for concurrent use.
type Registry struct {
	types map[uint32]*Type
	enc   Encoding
}

// registryQuery reads every type of the database with its enum labels.
const registryQuery = `
SELECT t.oid, n.nspname, t.typname, format_type(t.oid, -1), t.typtype::text,
       t.typelem, t.typlen, t.typdelim::text, t.typbasetype, t.typtypmod,
       coalesce(e.labels, '{}'), coalesce(e.orders, '{}')
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN (
    SELECT enumtypid,
           array_agg(enumlabel ORDER BY enumsortorder) AS labels,
           array_agg(enumsortorder ORDER BY enumsortorder) AS orders
    FROM pg_catalog.pg_enum
    GROUP BY enumtypid
) e ON e.enumtypid = t.oid`

// typeRow is one row of registryQuery.
type typeRow struct {
	oid, elem, base   uint32
	namespace, name   string
	formatted, typtyp string
	length            int16
	delim             string
	typmod            int32
	labels            []string
	orders            []float32
}

// LoadRegistry reads every type of conn's database. Types created later are
// unknown to the registry and converted as text; load a new registry to pick
// them up.
func LoadRegistry(ctx context.Context, conn *pgx.Conn) (*Registry, error) {
	rows, err := conn.Query(ctx, registryQuery)
	if err != nil {
		return nil, fmt.Errorf("loading PostgreSQL types: %w", err)
	}
	var all []typeRow
	for rows.Next() {
		var r typeRow
		if err := rows.Scan(&r.oid, &r.namespace, &r.name, &r.formatted, &r.typtyp,
			&r.elem, &r.length, &r.delim, &r.base, &r.typmod, &r.labels, &r.orders); err != nil {
			rows.Close()
			return nil, fmt.Errorf("loading PostgreSQL types: %w", err)
		}
		all = append(all, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading PostgreSQL types: %w", err)
	}
	return newRegistry(all), nil
}

// newRegistry builds the registry in passes, because arrays and domains
// refer to types that may come later in the rows, and a domain's base must
// be an array already linked to its element.
func newRegistry(rows []typeRow) *Registry {
	r := &Registry{types: make(map[uint32]*Type, len(rows))}
	for i := range rows {
		row := &rows[i]
		t := &Type{
			OID:       row.oid,
			Name:      row.formatted,
			Namespace: row.namespace,
			Typname:   row.name,
			Typmod:    -1,
			codec:     codecText,
		}
		switch row.typtyp {
		case "b":
			t.Kind = KindBase
			if isArray(row) {
				// An array type carries its element type's delimiter,
				// which array_out uses: ';' for box, ',' otherwise.
				t.Kind, t.codec = KindArray, codecArray
				t.delim = ','
				if row.delim != "" {
					t.delim = row.delim[0]
				}
			} else if c, ok := builtinCodecs[row.oid]; ok {
				t.codec = c
			}
		case "e":
			t.Kind = KindEnum
			t.EnumLabels, t.EnumSortOrder = row.labels, row.orders
			t.enumOrder = make(map[string]float32, len(row.labels))
			for i, label := range row.labels {
				if i < len(row.orders) {
					t.enumOrder[label] = row.orders[i]
				}
			}
		case "d":
			t.Kind, t.codec = KindDomain, codecDomain
		case "r":
			t.Kind = KindRange
		case "m":
			t.Kind = KindMultirange
		case "c":
			t.Kind = KindComposite
		case "p":
			t.Kind = KindPseudo
		default:
			t.Kind = KindUnknown
		}
		r.types[row.oid] = t
	}
	for i := range rows {
		row := &rows[i]
		t := r.types[row.oid]
		if t.Kind == KindArray {
			t.Elem = r.Lookup(row.elem, -1)
		}
	}
	for i := range rows {
		row := &rows[i]
		t := r.types[row.oid]
		if t.Kind == KindDomain {
			t.Base = r.Lookup(row.base, row.typmod)
		}
	}
	return r
}

// isArray tells a true array type from the base types that also have an
// element type: fixed-length ones such as name and point, and the
// space-separated int2vector and oidvector.
func isArray(row *typeRow) bool {
	return row.elem != 0 && row.length == -1 && row.oid != oidInt2Vector && row.oid != oidOIDVector
}

// Lookup returns the type with the given OID and modifier (-1 for none), as
// a column or a replication Relation message describes it. It never returns
// nil: an OID the registry does not know yields a type converted as text.
func (r *Registry) Lookup(oid uint32, typmod int32) *Type {
	t, ok := r.types[oid]
	if !ok {
		return &Type{OID: oid, Name: "unknown type " + strconv.FormatUint(uint64(oid), 10), Kind: KindUnknown, Typmod: typmod, codec: codecText, enc: r.enc}
	}
	if typmod < 0 || t.Kind == KindDomain {
		// A domain's modifier is part of its definition (Base carries it);
		// columns of a domain type have none of their own.
		return t
	}
	return t.withTypmod(typmod)
}

// withTypmod returns a copy of t carrying a type modifier.
func (t *Type) withTypmod(typmod int32) *Type {
	if t.Kind == KindDomain {
		return t
	}
	c := *t
	c.Typmod = typmod
	if t.Kind == KindArray && t.Elem != nil {
		// An array column's modifier applies to its elements.
		c.Elem = t.Elem.withTypmod(typmod)
		c.Name = c.Elem.Name + "[]"
		return &c
	}
	c.Name = formatTypmod(t, typmod)
	return &c
}

// formatTypmod renders a type name with its modifier as format_type does for
// the built-in types that have modifiers. Other types (an extension's, such
// as PostGIS geometry) keep their plain name.
func formatTypmod(t *Type, typmod int32) string {
	if t.Namespace != "pg_catalog" {
		return t.Name
	}
	n := strconv.Itoa(int(typmod))
	switch t.OID {
	case pgtype.BPCharOID:
		return "character(" + strconv.Itoa(int(typmod-4)) + ")"
	case pgtype.VarcharOID:
		return "character varying(" + strconv.Itoa(int(typmod-4)) + ")"
	case pgtype.BitOID:
		return "bit(" + n + ")"
	case pgtype.VarbitOID:
		return "bit varying(" + n + ")"
	case pgtype.NumericOID:
		precision, scale := numericTypmod(typmod)
		return "numeric(" + strconv.Itoa(precision) + "," + strconv.Itoa(scale) + ")"
	case pgtype.TimeOID:
		return "time(" + n + ") without time zone"
	case pgtype.TimetzOID:
		return "time(" + n + ") with time zone"
	case pgtype.TimestampOID:
		return "timestamp(" + n + ") without time zone"
	case pgtype.TimestamptzOID:
		return "timestamp(" + n + ") with time zone"
	case pgtype.IntervalOID:
		return "interval" + intervalTypmod(typmod)
	}
	return t.Name
}

// numericTypmod decodes numeric's modifier; the scale is an 11-bit signed
// number, negative scales being allowed since PostgreSQL 15.
func numericTypmod(typmod int32) (precision, scale int) {
	m := typmod - 4
	return int(m>>16) & 0xffff, (int(m&0x7ff) ^ 1024) - 1024
}

// intervalTypmod renders interval's modifier: a field range mask in the
// high half and a precision in the low half.
func intervalTypmod(typmod int32) string {
	const (
		month, year, day, hour, minute, second = 1 << 1, 1 << 2, 1 << 3, 1 << 10, 1 << 11, 1 << 12
		fullRange, fullPrecision               = 0x7fff, 0xffff
	)
	var fields string
	switch int(typmod>>16) & 0x7fff {
	case year:
		fields = " year"
	case month:
		fields = " month"
	case day:
		fields = " day"
	case hour:
		fields = " hour"
	case minute:
		fields = " minute"
	case second:
		fields = " second"
	case year | month:
		fields = " year to month"
	case day | hour:
		fields = " day to hour"
	case day | hour | minute:
		fields = " day to minute"
	case day | hour | minute | second:
		fields = " day to second"
	case hour | minute:
		fields = " hour to minute"
	case hour | minute | second:
		fields = " hour to second"
	case minute | second:
		fields = " minute to second"
	case fullRange:
	}
	if p := int(typmod) & 0xffff; p != fullPrecision {
		return fields + "(" + strconv.Itoa(p) + ")"
	}
	return fields
}

// resolve returns the type whose conversion rules apply to t: the base
// type of a domain, through any number of domains.
func (t *Type) resolve() *Type {
	for t.Kind == KindDomain && t.Base != nil {
		t = t.Base
	}
	return t
}

// SQLName returns the type's name as it may be written in a cast: the bare
// name for a built-in type, otherwise the quoted schema-qualified name. It
// carries no modifier, so a cast to it never rounds or truncates.
func (t *Type) SQLName() string {
	if t.Namespace == "pg_catalog" && isSimpleIdent(t.Typname) {
		return t.Typname
	}
	if t.Namespace == "" {
		return pgx.Identifier{t.Typname}.Sanitize()
	}
	return pgx.Identifier{t.Namespace, t.Typname}.Sanitize()
}

func isSimpleIdent(s string) bool {
	// Unquoted, char and bit mean char(1) and bit(1).
	if s == "" || s == "char" || s == "bit" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
