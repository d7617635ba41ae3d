package replication

import (
	"bytes"
	"fmt"

	"github.com/jackc/pglogrepl"

	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/document"
	"pgcapture/sqlcapture"
)

// change turns the decoded row message, of a captured table, into change
// events: each a key and a document built in the current batch.
func (s *Stream) change(rel *relation, lsn uint64) error {
	m := &s.msg
	src := s.txn
	src.LSN = lsn
	var old *tuple
	if m.oldKind != noOldTuple {
		old = &m.old
	}

	switch m.kind {
	case pglogrepl.MessageTypeInsert:
		return s.emit(rel, sqlcapture.OpInsert, &src, &m.new, nil, nil)
	case pglogrepl.MessageTypeDelete:
		return s.emit(rel, sqlcapture.OpDelete, &src, old, nil, nil)
	}
	// An update. Key changes become a delete of the old key and a creation
	// of the new one, so keyed collections keep no row under the old key.
	if old != nil && rel.hasKey(old) {
		var err error
		if s.oldKey, err = rel.appendKey(s.oldKey[:0], old, nil); err != nil {
			return err
		}
		if s.newKey, err = rel.appendKey(s.newKey[:0], &m.new, old); err != nil {
			return err
		}
		if !bytes.Equal(s.oldKey, s.newKey) {
			if err := s.emit(rel, sqlcapture.OpDelete, &src, old, nil, nil); err != nil {
				return err
			}
			return s.emit(rel, sqlcapture.OpInsert, &src, &m.new, nil, old)
		}
	}
	var before *tuple
	if m.oldKind == oldRow {
		before = old
	}
	return s.emit(rel, sqlcapture.OpUpdate, &src, &m.new, before, old)
}

// emit builds and sends one change document. row is the image the document
// holds; before, when set, becomes _meta.before; fill, when it is a whole old
// row, supplies unchanged TOASTed values that row omits.
func (s *Stream) emit(rel *relation, op sqlcapture.Op, src *document.Source, row, before, fill *tuple) error {
	if fill != nil && s.msg.oldKind != oldRow {
		fill = nil
	}
	// The key and the document go into the batch's arena, and the change
	// into its preallocated changes: nothing is allocated per change.
	b := s.current()
	arena := b.Arena
	start := len(arena)
	arena, err := rel.appendKey(arena, row, fill)
	if err != nil {
		return err
	}
	keyEnd := len(arena)
	arena = rel.doc.BeginChange(arena, byte(op), src)
	if before != nil {
		arena = document.BeginBefore(arena)
		if arena, err = rel.appendColumns(arena, before, nil, false); err != nil {
			return err
		}
		arena = document.EndBefore(arena)
	}
	arena = document.EndMeta(arena)
	// A delete under the default replica identity carries only the key: the
	// other columns are sent as nulls that mean "not sent", not NULL.
	identityOnly := op == sqlcapture.OpDelete && s.msg.oldKind == oldKey
	if arena, err = rel.appendColumns(arena, row, fill, identityOnly); err != nil {
		return err
	}
	arena = document.End(arena)
	s.queueChange(b, rel.stream, op, arena, start, keyEnd)
	return nil
}

// appendColumns appends row's columns as document fields. Unchanged TOASTed
// values are taken from fill when it has them, and omitted otherwise so the
// collection's merge reduction keeps the previous value.
func (rel *relation) appendColumns(doc []byte, row, fill *tuple, identityOnly bool) ([]byte, error) {
	var err error
	for i := range rel.columns {
		c := &rel.columns[i]
		if identityOnly && !c.identity || c.name == discovery.MetaField {
			continue // a column named _meta would collide with the metadata
		}
		kind, value := row.kinds[i], row.values[i]
		if kind == tupleUnchanged && fill != nil && fill.kinds[i] != tupleUnchanged {
			kind, value = fill.kinds[i], fill.values[i]
		}
		switch kind {
		case tupleUnchanged:
			continue
		case tupleNull:
			doc = document.Separator(doc)
			doc = append(doc, c.field...)
			doc = append(doc, "null"...)
		case tupleText:
			doc = document.Separator(doc)
			doc = append(doc, c.field...)
			if doc, err = c.typ.AppendJSON(doc, value); err != nil {
				return nil, fmt.Errorf("column %q of table %s: %w", c.name, rel.stream, err)
			}
		default:
			return nil, fmt.Errorf("column %q of table %s arrived in binary form, which was not requested", c.name, rel.stream)
		}
	}
	return doc, nil
}

// hasKey reports whether a tuple carries every key column.
func (rel *relation) hasKey(t *tuple) bool {
	for _, k := range rel.keys {
		if t.kinds[k] != tupleText {
			return false
		}
	}
	return true
}

// appendKey encodes the key of row, taking key values the row omits as
// unchanged TOAST from fill.
func (rel *relation) appendKey(dst []byte, row, fill *tuple) ([]byte, error) {
	var err error
	for _, k := range rel.keys {
		kind, value := row.kinds[k], row.values[k]
		if kind == tupleUnchanged && fill != nil {
			kind, value = fill.kinds[k], fill.values[k]
		}
		if kind != tupleText {
			return nil, fmt.Errorf("key column %q of table %s is missing from a replicated change (kind %q)", rel.columns[k].name, rel.stream, kind)
		}
		if dst, err = rel.columns[k].key.AppendKey(dst, value); err != nil {
			return nil, fmt.Errorf("key column %q of table %s: %w", rel.columns[k].name, rel.stream, err)
		}
	}
	return dst, nil
}
