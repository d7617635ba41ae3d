package document

import "strconv"

// Poll identifies the poll of a polled binding that produced a document.
type Poll struct {
	// Seq counts the binding's polls from 1.
	Seq int64
	// StartMillis is when the poll began, in Unix milliseconds.
	StartMillis int64
}

// BeginPoll starts the document of a polled row, or with op 'd' of a row
// the poll found gone. Like BeginBackfill it closes _meta: the columns
// follow, each after a comma.
func (t *Table) BeginPoll(dst []byte, op byte, p *Poll) []byte {
	dst = append(dst, `{"`+MetaField+`":{"op":"`...)
	dst = append(dst, op)
	dst = append(dst, `","source":{`...)
	dst = append(dst, t.source...)
	dst = append(dst, `,"poll":`...)
	dst = strconv.AppendInt(dst, p.Seq, 10)
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, p.StartMillis, 10)
	dst = append(dst, `}}`...)
	return dst
}
