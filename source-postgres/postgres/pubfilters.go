package postgres

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgcapture/source-postgres/discovery"
)

// publicationFilterProblems report the captured tables whose row filter or
// column list (PostgreSQL 15+) does not fit the table's replica identity,
// so that PostgreSQL refuses every UPDATE and DELETE on them: the user
// would otherwise meet the failure in their application, not in the
// capture. (A column list that leaves out the primary key needs no rule of
// its own: discovery keys the table by published columns only.)
func (db *Database) publicationFilterProblems(p *prerequisites, f *captureFacts, tables []*discovery.Table) {
	if f.published == nil {
		return
	}
	name := db.cfg.Advanced.PublicationName
	for i, t := range tables {
		pt := f.tables[i].publishedAs
		if pt == nil {
			continue
		}
		if f.published.RefusesChanges(pt) {
			filterIdentityProblems(p, name, t, pt)
		}
	}
}

// filterIdentityProblems explain why PostgreSQL refuses UPDATE and DELETE
// on t, which publication name publishes as pt, and the ways out.
func filterIdentityProblems(p *prerequisites, name string, t *discovery.Table, pt *discovery.PublishedTable) {
	table := t.QuotedName()
	refused := fmt.Sprintf("so PostgreSQL refuses every UPDATE and DELETE on %s", table)
	if len(pt.FilterOutsideIdentity) > 0 {
		what := fmt.Sprintf("publication %q filters table %s by WHERE (%s), which reads %s outside the table's replica identity (%s), %s",
			name, table, pt.RowFilter, quotedColumns(pt.FilterOutsideIdentity), identityName(pt.ReplicaIdentity), refused)
		var fixes []string
		if pt.Columns == nil {
			// FULL makes every column part of the identity, but PostgreSQL
			// refuses it alongside a column list.
			fixes = append(fixes, fmt.Sprintf("run ALTER TABLE %s REPLICA IDENTITY FULL", table))
		}
		fixes = append(fixes,
			fmt.Sprintf("make a unique index over the key and %s the replica identity (ALTER TABLE %s REPLICA IDENTITY USING INDEX ...)",
				quotedColumns(pt.FilterOutsideIdentity), table),
			"change the filter to read only replica identity columns: "+refilter(name, t, pt))
		p.add(what, strings.Join(fixes, "; or "))
	}
	if len(pt.IdentityOutsideList) > 0 {
		p.add(fmt.Sprintf("publication %q publishes table %s with a column list that leaves out its replica identity %s, %s",
			name, table, quotedColumns(pt.IdentityOutsideList), refused),
			"add them to the list: "+republish(name, t, pt, pt.IdentityOutsideList))
	}
	if pt.Columns != nil && pt.ReplicaIdentity == 'f' {
		p.add(fmt.Sprintf("table %s has REPLICA IDENTITY FULL and publication %q publishes it with a column list, %s", table, name, refused),
			fmt.Sprintf("give it a replica identity the list holds: ALTER TABLE %s REPLICA IDENTITY DEFAULT (its primary key) or USING INDEX ...; "+
				"or publish it without a column list: %s", table, republish(name, t, &discovery.PublishedTable{RowFilter: pt.RowFilter}, nil)))
	}
}

// republish is the statements that publish t again as pt does, with the
// columns add added to its column list.
func republish(name string, t *discovery.Table, pt *discovery.PublishedTable, add []string) string {
	pub := pgx.Identifier{name}.Sanitize()
	target := t.QuotedName()
	if pt.Columns != nil {
		var cols []string
		for _, c := range t.Columns {
			if slices.Contains(pt.Columns, int16(c.Position)) || slices.Contains(add, c.Name) {
				cols = append(cols, pgx.Identifier{c.Name}.Sanitize())
			}
		}
		target += " (" + strings.Join(cols, ", ") + ")"
	}
	if pt.RowFilter != "" {
		target += " WHERE (" + pt.RowFilter + ")"
	}
	return fmt.Sprintf("ALTER PUBLICATION %s DROP TABLE %s; ALTER PUBLICATION %s ADD TABLE %s", pub, t.QuotedName(), pub, target)
}

// refilter is the statements that publish t again as pt does, with a new
// filter for the user to write.
func refilter(name string, t *discovery.Table, pt *discovery.PublishedTable) string {
	s := republish(name, t, &discovery.PublishedTable{Columns: pt.Columns}, nil)
	return s + " WHERE (...)"
}

func identityName(replident byte) string {
	switch replident {
	case 'd':
		return "DEFAULT: the primary key, if any"
	case 'i':
		return "the index of REPLICA IDENTITY USING INDEX"
	case 'n':
		return "NOTHING"
	}
	return fmt.Sprintf("relreplident %q", replident)
}

func quotedColumns(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pgx.Identifier{n}.Sanitize()
	}
	noun := "column"
	if len(names) > 1 {
		noun = "columns"
	}
	return noun + " " + strings.Join(q, ", ")
}
