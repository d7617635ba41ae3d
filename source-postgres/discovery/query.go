package discovery

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"pgcapture/source-postgres/pgtypes"
)

// DescribeQuery returns the result columns of a query without running it:
// the server parses, plans and describes it as a prepared statement. Their
// types come from reg, as table columns' do; their Position counts result
// columns from 1. Nothing is known of their nullability: an outer join
// makes NULL a column its table declares NOT NULL.
func DescribeQuery(ctx context.Context, conn *pgconn.PgConn, reg *pgtypes.Registry, query string) ([]*Column, error) {
	sd, err := conn.Prepare(ctx, "", query, nil)
	if err != nil {
		return nil, err
	}
	if len(sd.ParamOIDs) > 0 {
		return nil, fmt.Errorf("the query has %d parameters ($1…), but a polled query takes none", len(sd.ParamOIDs))
	}
	if len(sd.Fields) == 0 {
		return nil, fmt.Errorf("the statement returns no columns: it must be a SELECT")
	}
	columns := make([]*Column, len(sd.Fields))
	for i, f := range sd.Fields {
		for _, prev := range columns[:i] {
			if prev.Name == f.Name {
				return nil, fmt.Errorf("the query returns two columns named %q: give them distinct names with AS", f.Name)
			}
		}
		typ := reg.Lookup(f.DataTypeOID, f.TypeModifier)
		columns[i] = &Column{Name: f.Name, Position: i + 1, Type: typ, TypeName: typ.Name}
	}
	return columns, nil
}

// NewPolledTable returns the table whose documents are the rows of a
// polled binding named namespace.name, with the given result columns, keyed
// by idColumns. Its documents are those of a table (DocumentSchema), but
// their _meta says which poll read them.
func NewPolledTable(namespace, name string, columns []*Column, idColumns []string) (*Table, error) {
	t := &Table{Schema: namespace, Name: name, Key: slices.Clone(idColumns), Polled: true}
	for _, c := range columns {
		nc := *c
		nc.jsonType = nil
		t.Columns = append(t.Columns, &nc)
	}
	var missing []string
	for _, name := range idColumns {
		c := t.column(name)
		if c == nil || !c.InDocuments() {
			missing = append(missing, fmt.Sprintf("%q", name))
			continue
		}
		c.jsonType = c.Type.AsKey()
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("id column(s) %s are not columns of the result, which has %s", strings.Join(missing, ", "), t.columnNames())
	}
	t.Keyless = len(t.Key) == 0
	return t, nil
}

func (t *Table) columnNames() string {
	var names []string
	for _, c := range t.Columns {
		if c.InDocuments() {
			names = append(names, fmt.Sprintf("%q", c.Name))
		}
	}
	return strings.Join(names, ", ")
}

// polledSourceSchema is the schema of _meta.source in a polled document.
func polledSourceSchema() map[string]any {
	return map[string]any{
		"type":     "object",
		"required": []string{"schema", "table", "poll", "ts_ms"},
		"properties": map[string]any{
			"schema": map[string]any{"type": "string", "description": "Namespace of the polled binding: the table's schema, or the name given to a query."},
			"table":  map[string]any{"type": "string", "description": "Name of the polled table, or the stream name given to a query."},
			"poll":   map[string]any{"type": "integer", "description": "Sequence number of the poll that read the row (or found it gone), counting from 1 for each binding."},
			"ts_ms":  map[string]any{"type": "integer", "description": "Start time of that poll in Unix milliseconds."},
		},
	}
}

// tableColumnsQuery reads what a result's description lacks of the columns
// of table $1.
const tableColumnsQuery = `SELECT a.attname, a.attnotnull::text, (a.attgenerated <> '')::text, coalesce(col_description(a.attrelid, a.attnum), '')
FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`

// AddTableFacts completes the described columns of a SELECT from the table
// t alone, such as SELECT t.* FROM t, with what the catalog says of the
// table's columns as they are now: NOT NULL, generated, comment.
func AddTableFacts(ctx context.Context, conn *pgconn.PgConn, t *Table, columns []*Column) error {
	rr := conn.ExecParams(ctx, tableColumnsQuery, [][]byte{[]byte(t.QuotedName())}, nil, nil, nil).Read()
	if rr.Err != nil {
		return fmt.Errorf("reading the columns of table %s: %w", t.QuotedName(), rr.Err)
	}
	for _, row := range rr.Rows {
		for _, c := range columns {
			if c.Name == string(row[0]) {
				c.NotNull, c.Generated, c.Comment = string(row[1]) == "true", string(row[2]) == "true", string(row[3])
			}
		}
	}
	return nil
}
