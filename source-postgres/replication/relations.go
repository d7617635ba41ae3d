package replication

import (
	"fmt"
	"slices"

	"github.com/jackc/pglogrepl"

	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/document"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/sqlcapture"
)

// relation is what a Relation message says about a table, prepared for
// decoding its rows.
type relation struct {
	stream sqlcapture.StreamID
	// table is set for captured tables.
	table   *discovery.Table
	doc     *document.Table
	columns []relColumn
	// keys index the captured table's key columns in columns, in key order.
	keys []int
	// For the watermarks table: the columns holding the slot and the mark.
	watermarks             bool
	slotColumn, markColumn int
	// binary, in binary mode, is the type of each column whose binary
	// value is rewritten into text (nil: the binary value is the text).
	binary []*pgtypes.Type
}

type relColumn struct {
	name     string
	oid      uint32
	typmod   int32
	field    []byte
	typ      *pgtypes.Type
	identity bool
	// key is the discovered column, set for key columns.
	key *discovery.Column
}

// columnInIdentity is the flag of a Relation message's column that is part
// of the table's replica identity.
const columnInIdentity = 1

// relationCache holds the latest Relation message of each relation id seen
// on the stream. pgoutput sends one before a relation's first row change in
// a session and again whenever the table's columns change, so a row always
// decodes against the columns it was written with.
type relationCache struct {
	byID map[uint32]*relation
	// txn, while a block of a streamed transaction is decoded, holds the
	// relations described to that transaction, consulted first
	// (streamed.go).
	txn        map[uint32]*relation
	tables     map[sqlcapture.StreamID]*discovery.Table
	watermarks sqlcapture.StreamID
	types      *pgtypes.Registry
	sourceTag  string
}

func newRelationCache(opts Options) relationCache {
	return relationCache{
		byID:       make(map[uint32]*relation),
		tables:     opts.Tables,
		watermarks: opts.Watermarks,
		types:      opts.Types,
		sourceTag:  opts.SourceTag,
	}
}

// get returns the relation with the id, or nil before its Relation message.
func (c *relationCache) get(id uint32) *relation {
	if rel := c.txn[id]; rel != nil {
		return rel
	}
	return c.byID[id]
}

// put caches what a Relation message describes and reports whether a
// captured table's columns changed, from those it had before in the stream
// or else from those it was discovered with.
func (c *relationCache) put(m *pglogrepl.RelationMessage) (rel *relation, changed bool, err error) {
	if rel, err = c.newRelation(m); err != nil {
		return nil, false, err
	}
	prev := c.get(m.RelationID)
	if c.txn != nil {
		c.txn[m.RelationID] = rel
	} else {
		c.byID[m.RelationID] = rel
	}
	return rel, rel.table != nil && rel.changedFrom(prev), nil
}

func (c *relationCache) newRelation(m *pglogrepl.RelationMessage) (*relation, error) {
	rel := &relation{stream: sqlcapture.StreamID{Schema: m.Namespace, Table: m.RelationName}}
	for _, col := range m.Columns {
		rel.columns = append(rel.columns, relColumn{
			name:     col.Name,
			oid:      col.DataType,
			typmod:   col.TypeModifier,
			field:    document.FieldName(col.Name),
			typ:      c.types.Lookup(col.DataType, col.TypeModifier),
			identity: col.Flags&columnInIdentity != 0,
		})
	}
	if rel.stream == c.watermarks {
		rel.watermarks = true
		rel.slotColumn, rel.markColumn = -1, -1
		for i, col := range rel.columns {
			switch col.name {
			case "slot":
				rel.slotColumn = i
			case "watermark":
				rel.markColumn = i
			}
		}
		if rel.slotColumn < 0 || rel.markColumn < 0 {
			return nil, fmt.Errorf("watermarks table %s must have the columns slot and watermark", rel.stream)
		}
		return rel, nil
	}
	table := c.tables[rel.stream]
	if table == nil {
		return rel, nil
	}
	rel.table = table
	rel.doc = document.NewTable(m.Namespace, m.RelationName, c.sourceTag)
	for _, name := range table.Key {
		idx := -1
		for i := range rel.columns {
			if rel.columns[i].name == name {
				idx = i
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("key column %q of table %s is missing from its replication stream", name, rel.stream)
		}
		for _, col := range table.Columns {
			if col.Name == name {
				rel.columns[idx].key = col
				// Key values are emitted as the discovered schema's key
				// types (floats and arrays, for one, as strings).
				rel.columns[idx].typ = col.JSONType()
			}
		}
		rel.keys = append(rel.keys, idx)
	}
	return rel, nil
}

// changedFrom reports whether the relation's columns differ from those of
// prev, its previous description in this stream, or when there was none
// from the columns the table was discovered with.
func (rel *relation) changedFrom(prev *relation) bool {
	type col struct {
		name   string
		oid    uint32
		typmod int32
	}
	var before, now []col
	for _, c := range rel.columns {
		now = append(now, col{c.name, c.oid, c.typmod})
	}
	if prev != nil {
		for _, c := range prev.columns {
			before = append(before, col{c.name, c.oid, c.typmod})
		}
	} else {
		for _, c := range rel.table.Columns {
			if !c.Unpublished {
				before = append(before, col{c.Name, c.Type.OID, c.Type.Typmod})
			}
		}
	}
	return !slices.Equal(before, now)
}
