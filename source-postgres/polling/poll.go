package polling

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/document"
)

// maxHorizonAge bounds how many xids may separate the previous poll's
// horizon from the current snapshot for age() to still compare them: xids
// compare modulo 2^32, so within 2^31, less a margin for the xids assigned
// while the poll runs. An older horizon re-reads every row at or below the
// cursor, which loses nothing.
const maxHorizonAge = 1 << 30

// frozenXID makes `age(xmin) <= age($n::xid)` true for every row: age of
// FrozenTransactionId is the largest int4.
const frozenXID = "2"

// poller reads polls over one connection. It keeps, per binding, the ids of
// its last full refresh, to report the rows the next one no longer finds.
type poller struct {
	conn *pgconn.PgConn
	log  logrus.FieldLogger
	prev map[string]*identities

	doc, id []byte
	cursor  [][]byte // text of the greatest cursor read so far
	hasCur  bool
}

// emitFunc receives each document of a poll, in order, with its op.
type emitFunc func(op byte, doc []byte) error

// poll reads the binding once, after pos (nil before its first poll), and
// emits its documents. It returns the binding's position after the poll.
//
// The poll runs in one REPEATABLE READ transaction, so all its queries see
// one snapshot. With a cursor, it reads the rows whose cursor is above the
// position's, and the rows at or below it that a transaction wrote which
// the previous poll's snapshot could not see (its xmin is at or above that
// snapshot's xmin, the horizon): a transaction that commits late with an
// older cursor value is caught by the next poll whatever its cursor values.
// Without a cursor, it reads every row, and reports as deleted the rows of
// the previous poll it no longer finds.
func (p *poller) poll(ctx context.Context, b *Binding, pos *Position, emit emitFunc) (_ *Position, err error) {
	start := time.Now()
	next := &Position{Seq: 1, StartMillis: start.UnixMilli()}
	if pos != nil {
		next.Seq = pos.Seq + 1
		next.Cursor = pos.Cursor
	}
	next.CursorColumns = b.Cursor
	meta := &document.Poll{Seq: next.Seq, StartMillis: next.StartMillis}
	p.hasCur = false
	results, err := p.conn.Exec(ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
		SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text FROM pg_current_snapshot() s`).ReadAll()
	if err == nil && (len(results) != 2 || len(results[1].Rows) != 1) {
		err = fmt.Errorf("unexpected reply to the snapshot query")
	}
	if err != nil {
		return nil, fmt.Errorf("starting the poll's transaction: %w", err)
	}
	defer func() {
		if err != nil {
			p.conn.Exec(context.WithoutCancel(ctx), "ROLLBACK").Close() //nolint:errcheck // the poll's error is returned; a connection that cannot roll back fails the next poll
		}
	}()
	xmin, err1 := strconv.ParseUint(string(results[1].Rows[0][0]), 10, 64)
	xmax, err2 := strconv.ParseUint(string(results[1].Rows[0][1]), 10, 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("unexpected snapshot %q", results[1].Rows[0])
	}
	next.Horizon = xmin

	var rows, late, deleted int
	switch {
	case len(b.cursor) == 0:
		rows, deleted, err = p.fullRefresh(ctx, b, meta, emit)
	case len(next.Cursor) == 0:
		op := byte('u')
		if pos == nil {
			op = 'c'
		}
		rows, err = p.read(ctx, b, b.first, nil, op, meta, emit, nil)
	default:
		params := make([][]byte, 0, len(next.Cursor)+1)
		for _, v := range next.Cursor {
			params = append(params, []byte(v))
		}
		if rows, err = p.read(ctx, b, b.above, params, 'u', meta, emit, nil); err != nil {
			break
		}
		horizon := frozenXID
		if pos.Horizon != 0 && xmax-pos.Horizon < maxHorizonAge {
			horizon = strconv.FormatUint(pos.Horizon%(1<<32), 10)
		}
		late, err = p.read(ctx, b, b.late, append(params, []byte(horizon)), 'u', meta, emit, nil)
	}
	if err != nil {
		return nil, err
	}
	if err := p.conn.Exec(ctx, "COMMIT").Close(); err != nil {
		return nil, fmt.Errorf("ending the poll's transaction: %w", err)
	}
	if p.hasCur {
		next.Cursor = make([]string, len(p.cursor))
		for i, v := range p.cursor {
			next.Cursor[i] = string(v)
		}
	}
	log := p.log.WithFields(logrus.Fields{
		"binding": b.Stream.String(), "poll": next.Seq, "rows": rows + late, "lateRows": late,
		"deleted": deleted, "cursor": next.Cursor, "took": time.Since(start).Round(time.Millisecond).String(),
	})
	if rows+late+deleted == 0 {
		log.Debug("polled: nothing changed")
	} else {
		log.Info("polled")
	}
	return next, nil
}

// fullRefresh reads every row, then reports the rows of the previous full
// refresh that are gone. After a restart the previous ids are unknown, so
// the first poll reports no deletions.
func (p *poller) fullRefresh(ctx context.Context, b *Binding, meta *document.Poll, emit emitFunc) (rows, deleted int, err error) {
	prev := p.prev[b.StateKey]
	cur := &identities{}
	if prev != nil {
		cur.arena = make([]byte, 0, len(prev.arena))
		cur.spans = make([]span, 0, prev.len())
	}
	if rows, err = p.read(ctx, b, b.all, nil, 'c', meta, emit, func(id []byte) byte {
		cur.add(id)
		if prev != nil && prev.contains(id) {
			return 'u'
		}
		return 'c'
	}); err != nil {
		return 0, 0, err
	}
	if dups := cur.sort(); dups > 0 {
		p.log.WithFields(logrus.Fields{"binding": b.Stream.String(), "rows": dups}).
			Warn("rows of the poll share their id_columns with another row: the collection keeps one document per id")
	}
	if prev != nil {
		err = prev.missingFrom(cur, func(id []byte) error {
			deleted++
			p.doc = b.doc.BeginPoll(p.doc[:0], 'd', meta)
			p.doc = append(p.doc, ',')
			p.doc = append(p.doc, id...)
			p.doc = document.End(p.doc)
			return emit('d', p.doc)
		})
	}
	if p.prev == nil {
		p.prev = make(map[string]*identities)
	}
	p.prev[b.StateKey] = cur
	return rows, deleted, err
}

// read runs one poll query and emits its rows with op, or with the op that
// identity returns for each row's ids when it is set. It tracks the last
// row's cursor in p.cursor.
func (p *poller) read(ctx context.Context, b *Binding, query string, params [][]byte, op byte, meta *document.Poll, emit emitFunc, identity func(id []byte) byte) (int, error) {
	rows := 0
	rr := p.conn.ExecParams(ctx, query, params, nil, nil, nil)
	for rr.NextRow() {
		values := rr.Values()
		if len(values) != len(b.columns) {
			rr.Close() //nolint:errcheck // the mismatch is the error to report
			return 0, fmt.Errorf("the poll returned %d columns, expected %d: the query's result changed while it ran", len(values), len(b.columns))
		}
		var err error
		if p.id, err = b.appendIdentity(p.id[:0], values); err != nil {
			rr.Close() //nolint:errcheck // the row's error is the one to report
			return 0, err
		}
		rowOp := op
		if identity != nil {
			rowOp = identity(p.id)
		}
		if p.doc, err = b.appendDocument(p.doc[:0], rowOp, meta, values); err != nil {
			rr.Close() //nolint:errcheck // the row's error is the one to report
			return 0, err
		}
		if query != b.late {
			p.trackCursor(b, values)
		}
		rows++
		if err := emit(rowOp, p.doc); err != nil {
			rr.Close() //nolint:errcheck // the output's error is the one to report
			return 0, err
		}
	}
	if _, err := rr.Close(); err != nil {
		return 0, fmt.Errorf("polling: %w", err)
	}
	return rows, nil
}

// trackCursor keeps the cursor of a row whose cursor columns are all set:
// rows arrive in cursor order, so the last such row holds the greatest.
func (p *poller) trackCursor(b *Binding, values [][]byte) {
	if len(b.cursor) == 0 {
		return
	}
	for _, i := range b.cursor {
		if values[i] == nil {
			return
		}
	}
	if len(p.cursor) != len(b.cursor) {
		p.cursor = make([][]byte, len(b.cursor))
	}
	// values are reused by the next row: copy them.
	for k, i := range b.cursor {
		p.cursor[k] = append(p.cursor[k][:0], values[i]...)
	}
	p.hasCur = true
}

// appendDocument appends the document of a polled row.
func (b *Binding) appendDocument(doc []byte, op byte, meta *document.Poll, values [][]byte) ([]byte, error) {
	var err error
	doc = b.doc.BeginPoll(doc, op, meta)
	for i := range b.columns {
		c := &b.columns[i]
		doc = append(doc, ',')
		doc = append(doc, c.name...)
		if values[i] == nil {
			doc = append(doc, "null"...)
			continue
		}
		if doc, err = c.typ.AppendJSON(doc, values[i]); err != nil {
			return nil, fmt.Errorf("column %q: %w", c.info.Name, err)
		}
	}
	return document.End(doc), nil
}

// appendIdentity appends the JSON members of the row's id columns.
func (b *Binding) appendIdentity(dst []byte, values [][]byte) ([]byte, error) {
	var err error
	for k, i := range b.ids {
		c := &b.columns[i]
		if values[i] == nil {
			return nil, fmt.Errorf("id column %q is NULL in a row of the result: the id columns must identify every row", c.info.Name)
		}
		if k > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, c.name...)
		if dst, err = c.typ.AppendJSON(dst, values[i]); err != nil {
			return nil, fmt.Errorf("id column %q: %w", c.info.Name, err)
		}
	}
	return dst, nil
}
