package replication

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"pgcapture/sqlcapture"
)

// A txnLog holds the events of one in-progress transaction that the server
// streams (protocol version 2) until its Stream Commit or Stream Abort: the
// latest records in a buffer of at most txnLogChunk bytes, the older ones in
// a temporary file that is unlinked as soon as it is created, so that the
// kernel deletes it when the log is closed or the process dies, SIGKILL
// included. Memory is so bounded by the number of open streamed
// transactions, not by their size; and streamedTxns bounds the buffers of
// all of them together too (see stop).
//
// Each record is one event tagged with the (sub)transaction it belongs to:
//
//	kind u8, subxid u32, then per kind:
//	change:        op u8, stream u16, key length u32, doc length u32, key, doc
//	schema change: stream u16
//	notice:        stream u16, message length u32, message
//	watermark:     id length u32, id
//
// where stream indexes the log's table of stream ids.
type txnLog struct {
	buf     []byte
	file    *os.File
	spilled int64 // bytes written to file
	streams []sqlcapture.StreamID
	index   map[sqlcapture.StreamID]uint16
}

// txnLogChunk is the size of a log's buffer, and of each write to its
// file.
const txnLogChunk = 1 << 20

const (
	recChange       byte = 'c'
	recSchemaChange byte = 's'
	recNotice       byte = 'n'
	recWatermark    byte = 'w'
)

// recHeader is the kind and subxid of every record.
const recHeader = 1 + 4

func (l *txnLog) streamIndex(id sqlcapture.StreamID) (uint16, error) {
	if i, ok := l.index[id]; ok {
		return i, nil
	}
	if len(l.streams) > 0xffff {
		return 0, fmt.Errorf("a streamed transaction touched more than 65536 captured tables")
	}
	if l.index == nil {
		l.index = make(map[sqlcapture.StreamID]uint16)
	}
	i := uint16(len(l.streams))
	l.streams = append(l.streams, id)
	l.index[id] = i
	return i, nil
}

// add appends ev as a record of subxid, spilling the buffer to the file
// first when the record does not fit, and writing a record larger than the
// whole buffer straight to the file. dir is where the file is created.
func (l *txnLog) add(ev sqlcapture.Event, subxid uint32, dir string) error {
	var rec [recHeader + 1 + 2 + 4 + 4]byte
	rec[1], rec[2], rec[3], rec[4] = byte(subxid>>24), byte(subxid>>16), byte(subxid>>8), byte(subxid)
	var head []byte
	var a, b []byte // the record's variable parts
	switch e := ev.(type) {
	case *sqlcapture.Change:
		i, err := l.streamIndex(e.Stream)
		if err != nil {
			return err
		}
		rec[0], rec[5] = recChange, byte(e.Op)
		binary.BigEndian.PutUint16(rec[6:], i)
		binary.BigEndian.PutUint32(rec[8:], uint32(len(e.Key)))
		binary.BigEndian.PutUint32(rec[12:], uint32(len(e.Doc)))
		head, a, b = rec[:16], e.Key, e.Doc
	case *sqlcapture.SchemaChange:
		i, err := l.streamIndex(e.Stream)
		if err != nil {
			return err
		}
		rec[0] = recSchemaChange
		binary.BigEndian.PutUint16(rec[5:], i)
		head = rec[:7]
	case *sqlcapture.Notice:
		i, err := l.streamIndex(e.Stream)
		if err != nil {
			return err
		}
		rec[0] = recNotice
		binary.BigEndian.PutUint16(rec[5:], i)
		binary.BigEndian.PutUint32(rec[7:], uint32(len(e.Message)))
		head, a = rec[:11], []byte(e.Message)
	case *sqlcapture.Watermark:
		rec[0] = recWatermark
		binary.BigEndian.PutUint32(rec[5:], uint32(len(e.ID)))
		head, a = rec[:9], []byte(e.ID)
	default:
		return fmt.Errorf("unexpected event %T in a streamed transaction", ev)
	}
	n := len(head) + len(a) + len(b)
	if len(l.buf)+n > txnLogChunk {
		if err := l.spill(dir); err != nil {
			return err
		}
	}
	if n > txnLogChunk {
		// Larger than the buffer (a huge value): straight to the file.
		for _, part := range [][]byte{head, a, b} {
			if err := l.write(part, dir); err != nil {
				return err
			}
		}
		return nil
	}
	if l.buf == nil {
		l.buf = make([]byte, 0, txnLogChunk)
	}
	l.buf = append(l.buf, head...)
	l.buf = append(l.buf, a...)
	l.buf = append(l.buf, b...)
	return nil
}

// spill moves the buffer's records to the file, keeping the buffer's
// memory.
func (l *txnLog) spill(dir string) error {
	if len(l.buf) == 0 {
		return nil
	}
	if err := l.write(l.buf, dir); err != nil {
		return err
	}
	l.buf = l.buf[:0]
	return nil
}

// release spills the buffer and lets its memory go.
func (l *txnLog) release(dir string) error {
	err := l.spill(dir)
	l.buf = nil
	return err
}

func (l *txnLog) write(p []byte, dir string) error {
	if l.file == nil {
		f, err := os.CreateTemp(dir, "pgcapture-txn-*")
		if err != nil {
			return fmt.Errorf("creating a file for a large streamed transaction (in %q, the temporary directory; set TMPDIR to use another): %w", dir, err)
		}
		// Unlinked at once: the file lives as long as it is open, and no
		// longer, however the process ends.
		if err := os.Remove(f.Name()); err != nil {
			f.Close() //nolint:errcheck // the unlink failure is what matters
			return fmt.Errorf("unlinking %s: %w", f.Name(), err)
		}
		l.file = f
	}
	if _, err := l.file.Write(p); err != nil {
		return fmt.Errorf("writing a large streamed transaction to a temporary file in %q (is the disk full?): %w", dir, err)
	}
	l.spilled += int64(len(p))
	return nil
}

// close discards the log, deleting its file.
func (l *txnLog) close() {
	if l.file != nil {
		l.file.Close() //nolint:errcheck // a file being discarded: nothing was to be read from it
		l.file = nil
	}
	l.buf = nil
}

// txnRecord is one record of a txnLog as replay reads it. Its byte slices
// are valid until the next record is read.
type txnRecord struct {
	kind   byte
	subxid uint32
	op     sqlcapture.Op
	stream sqlcapture.StreamID
	key    []byte
	// doc is a change's document, the notice's message or the watermark's
	// id.
	doc []byte
}

// replay calls fn with every record of the log in the order they were
// added: those in the file, then those in the buffer.
func (l *txnLog) replay(scratch *[]byte, fn func(*txnRecord) error) error {
	var r txnRecord
	if l.file != nil {
		br := bufio.NewReaderSize(io.NewSectionReader(l.file, 0, l.spilled), 256<<10)
		for {
			err := l.read(br, scratch, &r)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("reading back a large streamed transaction from its temporary file: %w", err)
			}
			if err := fn(&r); err != nil {
				return err
			}
		}
	}
	src := l.buf
	for len(src) > 0 {
		var err error
		if src, err = l.parse(src, &r); err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return nil
}

var errBadRecord = errors.New("corrupt record in a streamed transaction's log")

// headLen returns the length of the fixed part of a record of kind.
func headLen(kind byte) (int, error) {
	switch kind {
	case recChange:
		return 16, nil
	case recSchemaChange:
		return 7, nil
	case recNotice:
		return 11, nil
	case recWatermark:
		return 9, nil
	}
	return 0, errBadRecord
}

// decodeHead fills r from a record's fixed part and returns the lengths of
// its variable parts.
func (l *txnLog) decodeHead(h []byte, r *txnRecord) (a, b int, err error) {
	r.kind = h[0]
	r.subxid = binary.BigEndian.Uint32(h[1:])
	r.key, r.doc, r.op, r.stream = nil, nil, 0, sqlcapture.StreamID{}
	stream := func(i uint16) error {
		if int(i) >= len(l.streams) {
			return errBadRecord
		}
		r.stream = l.streams[i]
		return nil
	}
	switch r.kind {
	case recChange:
		r.op = sqlcapture.Op(h[5])
		err = stream(binary.BigEndian.Uint16(h[6:]))
		a, b = int(binary.BigEndian.Uint32(h[8:])), int(binary.BigEndian.Uint32(h[12:]))
	case recSchemaChange:
		err = stream(binary.BigEndian.Uint16(h[5:]))
	case recNotice:
		err = stream(binary.BigEndian.Uint16(h[5:]))
		b = int(binary.BigEndian.Uint32(h[7:]))
	case recWatermark:
		b = int(binary.BigEndian.Uint32(h[5:]))
	}
	return a, b, err
}

// parse decodes the record at the start of src and returns what follows.
func (l *txnLog) parse(src []byte, r *txnRecord) ([]byte, error) {
	if len(src) < 1 {
		return nil, errBadRecord
	}
	n, err := headLen(src[0])
	if err != nil || len(src) < n {
		return nil, errBadRecord
	}
	a, b, err := l.decodeHead(src[:n], r)
	if err != nil {
		return nil, err
	}
	src = src[n:]
	if len(src) < a+b {
		return nil, errBadRecord
	}
	r.key, r.doc = src[:a:a], src[a:a+b:a+b]
	return src[a+b:], nil
}

// read decodes the next record of br, its variable parts into scratch.
func (l *txnLog) read(br *bufio.Reader, scratch *[]byte, r *txnRecord) error {
	kind, err := br.ReadByte()
	if err != nil {
		return err // io.EOF between records is the end
	}
	n, err := headLen(kind)
	if err != nil {
		return err
	}
	var h [16]byte
	h[0] = kind
	if _, err := io.ReadFull(br, h[1:n]); err != nil {
		return noEOF(err)
	}
	a, b, err := l.decodeHead(h[:n], r)
	if err != nil {
		return err
	}
	if cap(*scratch) < a+b {
		*scratch = make([]byte, a+b)
	}
	body := (*scratch)[:a+b]
	if _, err := io.ReadFull(br, body); err != nil {
		return noEOF(err)
	}
	r.key, r.doc = body[:a:a], body[a:]
	return nil
}

// noEOF turns an end of file inside a record into an error of its own.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
