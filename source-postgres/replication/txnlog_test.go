package replication

import (
	"bytes"
	"fmt"
	"testing"

	"pgcapture/sqlcapture"
)

// TestTxnLog: every kind of event comes back from replay as it was added
// and in order, whether it stayed in memory, was spilled with the buffer,
// or was larger than the buffer and written straight to the file.
func TestTxnLog(t *testing.T) {
	users := sqlcapture.StreamID{Schema: "public", Table: "users"}
	orders := sqlcapture.StreamID{Schema: "s", Table: "orders"}
	huge := bytes.Repeat([]byte("x"), txnLogChunk+10)
	for _, tc := range []struct {
		name    string
		changes int
	}{
		{"in memory", 10},
		{"spilled", 3 * txnLogChunk / 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l txnLog
			defer l.close()
			dir := t.TempDir()
			type rec struct {
				kind         byte
				subxid       uint32
				op           sqlcapture.Op
				stream       sqlcapture.StreamID
				key, payload string
			}
			var want []rec
			add := func(ev sqlcapture.Event, r rec) {
				t.Helper()
				if err := l.add(ev, r.subxid, dir); err != nil {
					t.Fatal(err)
				}
				want = append(want, r)
			}
			add(&sqlcapture.SchemaChange{Stream: users}, rec{kind: recSchemaChange, subxid: 7, stream: users})
			for i := range tc.changes {
				stream := users
				if i%3 == 0 {
					stream = orders
				}
				key, doc := fmt.Sprintf("k%d", i), fmt.Sprintf(`{"id":%d,"pad":"%0150d"}`, i, i)
				add(&sqlcapture.Change{Stream: stream, Op: sqlcapture.OpUpdate, Key: []byte(key), Doc: []byte(doc)},
					rec{kind: recChange, subxid: uint32(i % 5), op: sqlcapture.OpUpdate, stream: stream, key: key, payload: doc})
			}
			add(&sqlcapture.Change{Stream: users, Op: sqlcapture.OpInsert, Key: []byte("huge"), Doc: huge},
				rec{kind: recChange, subxid: 9, op: sqlcapture.OpInsert, stream: users, key: "huge", payload: string(huge)})
			add(&sqlcapture.Notice{Stream: orders, Message: "truncated"}, rec{kind: recNotice, subxid: 1, stream: orders, payload: "truncated"})
			add(&sqlcapture.Watermark{ID: "w-1"}, rec{kind: recWatermark, subxid: 2, payload: "w-1"})

			var scratch []byte
			var got []rec
			err := l.replay(&scratch, func(r *txnRecord) error {
				got = append(got, rec{kind: r.kind, subxid: r.subxid, op: r.op, stream: r.stream, key: string(r.key), payload: string(r.doc)})
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("replayed %d records, want %d", len(got), len(want))
			}
			for i := range want {
				if w, g := want[i], got[i]; w.kind != g.kind || w.subxid != g.subxid || w.stream != g.stream ||
					(w.kind == recChange && (w.op != g.op || w.key != g.key)) || w.payload != g.payload {
					t.Fatalf("record %d: got %+.80v, want %+.80v", i, g, w)
				}
			}
			// The huge record goes to the file in any case; the changes only
			// when they outgrow the buffer.
			if spilledChanges := l.spilled > int64(len(huge)+txnLogChunk/2); spilledChanges != (tc.changes > 100) {
				t.Errorf("%d bytes spilled to the file", l.spilled)
			}
		})
	}
}

// BenchmarkTxnLog: one streamed change of about 250 bytes logged, spilled
// and replayed (ns/row).
func BenchmarkTxnLog(b *testing.B) {
	ev := &sqlcapture.Change{Stream: sqlcapture.StreamID{Schema: "public", Table: "bench"}, Op: sqlcapture.OpInsert,
		Key: []byte("12345678"), Doc: bytes.Repeat([]byte("d"), 240)}
	dir := b.TempDir()
	var l txnLog
	defer l.close()
	for b.Loop() {
		if err := l.add(ev, 1, dir); err != nil {
			b.Fatal(err)
		}
	}
	var scratch []byte
	if err := l.replay(&scratch, func(*txnRecord) error { return nil }); err != nil {
		b.Fatal(err)
	}
}
