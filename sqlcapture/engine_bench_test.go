package sqlcapture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/sirupsen/logrus"
)

// The engine's own cost per row, with the database and the output taken
// out: an in-memory source that hands over pre-built documents as fast as
// the engine takes them, and an output that only counts.

// benchDoc is a typical document of the benchmark table (bench/ in the
// repository root), about 300 bytes.
var benchDoc = []byte(`{"_meta":{"op":"c","source":{"schema":"public","table":"bench","loc":[23715488,23715632,23715752],"ts_ms":1755800000123,"txid":771}},"id":123456,"n":77011,"s":"e10adc3949ba59abbe56e057","ts":"2024-01-02T18:17:36.123456Z","amount":"1234.56","doc":{"k":456,"tag":"tag-72"}}`)

// engineDB is a Database of one table of rows rows, all with benchDoc.
type engineDB struct {
	rows   int64
	events chan *Batch
}

func (db *engineDB) Reconnect(context.Context) error { return nil }

func (db *engineDB) StartReplication(context.Context, string, string) (ReplicationStream, error) {
	return &engineStream{events: db.events}, nil
}

func (db *engineDB) ScanChunk(_ context.Context, _ StreamID, _ []byte, offset int64, limit int, emit func(Row) error) ([]byte, bool, error) {
	n := min(int64(limit), db.rows-offset)
	var key []byte
	for i := range n {
		key = AppendKeyInt(key[:0], offset+i+1)
		if err := emit(Row{Key: key, Doc: benchDoc}); err != nil {
			return nil, false, err
		}
	}
	return key, n < int64(limit), nil
}

// WriteWatermark delivers the fence at once, as a stream that has nothing
// else to say would.
func (db *engineDB) WriteWatermark(_ context.Context, id string) error {
	db.events <- &Batch{Events: []Event{&Watermark{ID: id}, &Commit{Cursor: "0/1"}}}
	return nil
}

func (db *engineDB) DescribeStream(context.Context, StreamID) (json.RawMessage, error) {
	return json.RawMessage(`{"type":"object"}`), nil
}

type engineStream struct{ events chan *Batch }

func (s *engineStream) Events() <-chan *Batch                     { return s.events }
func (s *engineStream) Release(*Batch)                            {}
func (s *engineStream) Err() error                                { return nil }
func (s *engineStream) Acknowledge(context.Context, string) error { return nil }
func (s *engineStream) Close(context.Context) error               { return nil }

// countingOutput ends the capture at the first checkpoint after want documents.
type countingOutput struct {
	docs, want int
	stop       context.CancelFunc
}

func (o *countingOutput) Captured(uint32, []byte) error { o.docs++; return nil }

func (o *countingOutput) Checkpoint([]byte) error {
	if o.docs >= o.want {
		o.stop()
	}
	return nil
}

func (o *countingOutput) SourcedSchema(uint32, []byte) error { return nil }

var engineBinding = Binding{StateKey: "public%2Fbench", Stream: StreamID{"public", "bench"}, KeyColumns: []string{"id"}}

func runEngine(b *testing.B, db *engineDB, state State, want int, opts Options) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &countingOutput{want: want, stop: cancel}
	log := logrus.New()
	log.SetOutput(io.Discard)
	opts.Logger = log
	err := Run(ctx, db, []Binding{engineBinding}, state, out, NewAcknowledgements(), opts)
	if !errors.Is(err, context.Canceled) {
		b.Fatalf("the capture ended with %v", err)
	}
	if out.docs != want {
		b.Fatalf("the capture emitted %d documents, want %d", out.docs, want)
	}
}

// BenchmarkEngineBackfill is the engine's cost per backfilled row: the
// chunk callback, the fence after each chunk, and the checkpoints.
func BenchmarkEngineBackfill(b *testing.B) {
	for _, chunk := range []int{4096, 65536} {
		b.Run(fmt.Sprintf("chunk=%d", chunk), func(b *testing.B) {
			db := &engineDB{rows: int64(b.N), events: make(chan *Batch, 4)}
			b.ReportAllocs()
			runEngine(b, db, State{}, b.N, Options{ChunkSize: chunk})
		})
	}
}

// BenchmarkEngineStream is the engine's cost per streamed change of a
// backfilled table, in transactions of 10,000 changes, as the replication
// reader delivers them: in batches of up to 1024 events.
func BenchmarkEngineStream(b *testing.B) {
	db := &engineDB{events: make(chan *Batch, 4)}
	state := State{Cursor: "0/1", Streams: map[string]*StreamState{
		engineBinding.StateKey: {Mode: ModeActive, KeyColumns: engineBinding.KeyColumns},
	}}
	change := &Change{Stream: engineBinding.Stream, Op: OpInsert, Key: AppendKeyInt(nil, 1), Doc: benchDoc}
	commit := &Commit{Cursor: "0/2"}
	go func() {
		batch := &Batch{}
		for i := range b.N {
			batch.Events = append(batch.Events, change)
			if (i+1)%10_000 == 0 {
				batch.Events = append(batch.Events, commit)
			}
			if len(batch.Events) >= 1024 {
				db.events <- batch
				batch = &Batch{}
			}
		}
		batch.Events = append(batch.Events, commit)
		db.events <- batch
	}()
	b.ReportAllocs()
	runEngine(b, db, state, b.N, Options{})
}
