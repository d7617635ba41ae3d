// Package document assembles the JSON change documents the capture emits.
// Backfill rows and replicated changes are both written here, so the two
// paths cannot drift apart in shape:
//
//	{"_meta":{"op":"u","source":{"schema":"public","table":"users",
//	  "loc":[23715488,23715632,23715752],"ts_ms":1755800000123,"txid":771},
//	  "before":{"id":1,"name":"alice"}},"id":1,"name":"alicia"}
//
// Column values are appended by the caller with pgtypes, between Begin… and End.
package document

import (
	"encoding/json"
	"strconv"
)

// MetaField is the member of every document that holds the capture's
// metadata. A column of that name is left out of documents.
const MetaField = "_meta"

// Table holds the pre-encoded parts of one table's documents.
type Table struct {
	// source is `"schema":"…","table":"…"`.
	source []byte
}

// NewTable pre-encodes the parts of a table's documents that never change.
// A tag, when not empty, is written as _meta.source.tag in every document
// (the source_tag option).
func NewTable(schema, table, tag string) *Table {
	var b []byte
	b = append(b, `"schema":`...)
	b = appendString(b, schema)
	b = append(b, `,"table":`...)
	b = appendString(b, table)
	if tag != "" {
		b = append(b, `,"tag":`...)
		b = appendString(b, tag)
	}
	return &Table{source: b}
}

// FieldName returns the JSON-encoded name of a column followed by a colon,
// to be appended before each of its values.
func FieldName(column string) []byte {
	return append(appendString(nil, column), ':')
}

// BeginBackfill starts a backfilled row's document. offset is the row's
// position in its table's backfill.
func (t *Table) BeginBackfill(dst []byte, offset int64) []byte {
	dst = append(dst, `{"`+MetaField+`":{"op":"c","source":{`...)
	dst = append(dst, t.source...)
	dst = append(dst, `,"loc":[-1,`...)
	dst = strconv.AppendInt(dst, offset, 10)
	dst = append(dst, `,0],"snapshot":true}}`...)
	return dst
}

// Source locates a replicated change.
type Source struct {
	// PrevCommitEnd, LSN and CommitLSN form loc: the end of the previous
	// transaction, the change's own position and its transaction's commit.
	// Compared as a triple they order changes as the stream delivered them.
	PrevCommitEnd, LSN, CommitLSN uint64
	// CommitTimeMillis is the commit time in Unix milliseconds.
	CommitTimeMillis int64
	TxID             uint32
}

// BeginChange starts a replicated change's document, leaving _meta open so
// that a before image may follow (BeginBefore … EndBefore). Close _meta with
// EndMeta before appending columns.
func (t *Table) BeginChange(dst []byte, op byte, src *Source) []byte {
	dst = append(dst, `{"`+MetaField+`":{"op":"`...)
	dst = append(dst, op)
	dst = append(dst, `","source":{`...)
	dst = append(dst, t.source...)
	dst = append(dst, `,"loc":[`...)
	dst = strconv.AppendUint(dst, src.PrevCommitEnd, 10)
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, src.LSN, 10)
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, src.CommitLSN, 10)
	dst = append(dst, `],"ts_ms":`...)
	dst = strconv.AppendInt(dst, src.CommitTimeMillis, 10)
	dst = append(dst, `,"txid":`...)
	dst = strconv.AppendUint(dst, uint64(src.TxID), 10)
	dst = append(dst, '}')
	return dst
}

// BeginBefore opens _meta.before.
func BeginBefore(dst []byte) []byte { return append(dst, `,"before":{`...) }

// EndBefore closes _meta.before.
func EndBefore(dst []byte) []byte { return append(dst, '}') }

// EndMeta closes _meta.
func EndMeta(dst []byte) []byte { return append(dst, '}') }

// End closes the document.
func End(dst []byte) []byte { return append(dst, '}') }

// Separator returns the byte that precedes the next member of an object
// whose last byte is last: nothing after an opening brace, else a comma.
func Separator(dst []byte) []byte {
	if len(dst) > 0 && dst[len(dst)-1] != '{' {
		return append(dst, ',')
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	// Names are encoded once per table, so encoding/json's careful escaping
	// (including of invalid UTF-8) is worth its cost here.
	b, _ := json.Marshal(s)
	return append(dst, b...)
}
