// Package polling captures bindings without logical replication: it reads
// a table or a query on a schedule and presents each poll to the capture
// engine as one source transaction (its documents as Change events, then a
// Commit whose cursor holds every binding's Position).
//
// binding.go describes a binding's query and builds its SQL; poll.go reads
// one poll; stream.go schedules polls and hands them to the engine; source.go
// is the engine's Database.
package polling

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/document"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/sqlcapture"
)

// XminColumn is the result column that carries the xmin of the row whose
// cursor a poll follows. Polled tables select it themselves; a query with
// a cursor must select it (SELECT o.xmin, …): it is how rows that commit
// late with an older cursor value are caught. Documents leave it out.
const XminColumn = "xmin"

// Spec is what the resource configuration says of a polled binding.
type Spec struct {
	StateKey string
	// Stream names the binding: the table, or the names given to a query.
	Stream sqlcapture.StreamID
	// Query is the user's SELECT; empty for a polled table.
	Query string
	// Table is the polled table, when Query is empty.
	Table     *discovery.Table
	IDColumns []string
	Cursor    []string
	Interval  time.Duration
	// SourceTag, when set, is written to every document as _meta.source.tag.
	SourceTag string
}

// Binding is a polled binding described on the database: its documents'
// shape and its poll queries.
type Binding struct {
	Spec
	// base is the SELECT the poll queries read from, as a subquery q.
	base string
	// shape is the base's result as last described.
	shape []resultColumn

	table   *discovery.Table
	doc     *document.Table
	columns []column
	// cursor and ids index columns; xmin says whether base has XminColumn.
	cursor, ids []int
	xmin        bool
	// queries read a full refresh, a first cursor poll, the rows above the
	// cursor, and the late rows at or below it.
	all, first, above, late string
}

type resultColumn struct {
	name   string
	oid    uint32
	typmod int32
}

type column struct {
	name []byte // JSON-encoded name and colon
	typ  *pgtypes.Type
	info *discovery.Column
}

// Prepare describes a polled binding on conn and checks everything a poll
// needs: the query runs, returns the id and cursor columns, and orders by
// the cursor. Errors say what to change; the caller names the binding.
func Prepare(ctx context.Context, conn *pgconn.PgConn, reg *pgtypes.Registry, spec Spec) (*Binding, error) {
	b := &Binding{Spec: spec}
	if spec.Query != "" {
		b.base = strings.TrimRight(strings.TrimSpace(spec.Query), "; \t\r\n")
	} else {
		if len(b.IDColumns) == 0 {
			if spec.Table.Keyless {
				return nil, fmt.Errorf(`table %s has no primary key or unique index: name the columns that identify a row in "id_columns"`, spec.Table.QuotedName())
			}
			b.IDColumns = spec.Table.Key
		}
		// t.* is expanded anew by each poll's describe, so that a column
		// added to the table appears as a schema change.
		b.base = "SELECT t.*, t." + XminColumn + " FROM " + spec.Table.QuotedName() + " AS t"
	}
	if err := b.describe(ctx, conn, reg); err != nil {
		return nil, err
	}
	// As a subquery, the query must be a SELECT (a DELETE … RETURNING
	// describes a result too).
	if _, err := conn.Prepare(ctx, "", b.all+" LIMIT 0", nil); err != nil {
		return nil, fmt.Errorf(`"query" cannot be read from as a subquery (it must be a SELECT): %w`, err)
	}
	if len(b.cursor) > 0 {
		// A cursor that cannot be ordered fails here, naming its type.
		if _, err := conn.Prepare(ctx, "", b.first+" LIMIT 0", nil); err != nil {
			return nil, fmt.Errorf("%q cannot order the rows by the cursor column(s) %s: %w", "cursor", b.cursorTypes(), err)
		}
	}
	return b, nil
}

// describe (re)reads the shape of the base query's result and rebuilds the
// binding's documents and poll queries for it.
func (b *Binding) describe(ctx context.Context, conn *pgconn.PgConn, reg *pgtypes.Registry) error {
	result, err := discovery.DescribeQuery(ctx, conn, reg, b.base)
	if err != nil {
		if b.Query != "" {
			return fmt.Errorf(`"query" fails: %w`, err)
		}
		return fmt.Errorf("reading table %s: %w", b.Table.QuotedName(), err)
	}
	shape := make([]resultColumn, len(result))
	var columns []*discovery.Column
	xmin := false
	for i, c := range result {
		shape[i] = resultColumn{c.Name, c.Type.OID, c.Type.Typmod}
		if c.Name == XminColumn && c.Type.OID == pgtype.XIDOID {
			xmin = true
			continue
		}
		columns = append(columns, c)
	}
	if b.Query == "" {
		if err := discovery.AddTableFacts(ctx, conn, b.Table, columns); err != nil {
			return err
		}
	}
	table, err := discovery.NewPolledTable(b.Stream.Schema, b.Stream.Table, columns, b.IDColumns)
	if err != nil {
		return fmt.Errorf(`"id_columns": %w`, err)
	}
	b.shape, b.table, b.xmin = shape, table, xmin
	b.doc = document.NewTable(b.Stream.Schema, b.Stream.Table, b.SourceTag)
	b.columns, b.cursor, b.ids = nil, nil, nil
	var selects []string
	for _, c := range table.Columns {
		if !c.InDocuments() {
			continue
		}
		b.columns = append(b.columns, column{name: document.FieldName(c.Name), typ: c.JSONType(), info: c})
		selects = append(selects, "q."+pgx.Identifier{c.Name}.Sanitize())
	}
	index := func(name string) int {
		for i, c := range b.columns {
			if c.info.Name == name {
				return i
			}
		}
		return -1
	}
	for _, name := range b.IDColumns {
		b.ids = append(b.ids, index(name))
	}
	var missing []string
	for _, name := range b.Cursor {
		i := index(name)
		if i < 0 {
			missing = append(missing, fmt.Sprintf("%q", name))
		}
		b.cursor = append(b.cursor, i)
	}
	if len(missing) > 0 {
		return fmt.Errorf(`"cursor": column(s) %s are not columns of the result`, strings.Join(missing, ", "))
	}
	if len(b.cursor) > 0 && !b.xmin {
		return fmt.Errorf(`"cursor" needs the query to also select the xmin of the table whose rows carry the cursor, as %s (e.g. SELECT o.xmin, o.id, o.updated_at FROM orders o …): with it a poll catches rows that commit late with an older cursor value`, XminColumn)
	}

	// The newline ends a -- comment at the end of the user's query.
	head := "SELECT " + strings.Join(selects, ", ") + " FROM (" + b.base + "\n) AS q"
	b.all = head
	if len(b.cursor) == 0 {
		return nil
	}
	var order, cols, params []string
	for i, name := range b.Cursor {
		col := "q." + pgx.Identifier{name}.Sanitize()
		cols = append(cols, col)
		order = append(order, col+" NULLS FIRST")
		params = append(params, fmt.Sprintf("$%d", i+1))
	}
	above := "(" + strings.Join(cols, ", ") + ") > (" + strings.Join(params, ", ") + ")"
	b.first = head + " ORDER BY " + strings.Join(order, ", ")
	b.above = head + " WHERE " + above + " ORDER BY " + strings.Join(order, ", ")
	// The late rows: at or below the cursor, but written by a transaction
	// the previous poll's snapshot could not see. age() compares xids
	// modulo 2^32 from the current transaction, which poll.go keeps valid.
	b.late = head + " WHERE (" + above + ") IS NOT TRUE AND " +
		fmt.Sprintf("age(q.%s) <= age($%d::xid)", XminColumn, len(params)+1)
	return nil
}

// sameShape reports whether a described result matches the binding's.
func (b *Binding) sameShape(result []*discovery.Column) bool {
	if len(result) != len(b.shape) {
		return false
	}
	for i, c := range result {
		if (resultColumn{c.Name, c.Type.OID, c.Type.Typmod}) != b.shape[i] {
			return false
		}
	}
	return true
}

func (b *Binding) cursorTypes() string {
	var out []string
	for _, i := range b.cursor {
		out = append(out, fmt.Sprintf("%q (%s)", b.columns[i].info.Name, b.columns[i].info.TypeName))
	}
	return strings.Join(out, ", ")
}

// DocumentSchema returns the JSON schema of the binding's documents.
func (b *Binding) DocumentSchema() ([]byte, error) { return b.table.DocumentSchema() }

// KeyPointers returns the collection key: the id columns.
func (b *Binding) KeyPointers() []string { return b.table.KeyPointers() }
