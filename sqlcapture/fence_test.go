package sqlcapture

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// fenceDB is a one-row table whose stream, after the watermark is written,
// delivers changes of a long transaction for a while (or nothing at all),
// and then, unless silent, the fence.
type fenceDB struct {
	events  chan *Batch
	busyFor time.Duration
	silent  bool
}

func (db *fenceDB) Reconnect(context.Context) error { return nil }

func (db *fenceDB) StartReplication(context.Context, string, string) (ReplicationStream, error) {
	return &engineStream{events: db.events}, nil
}

func (db *fenceDB) ScanChunk(_ context.Context, _ StreamID, _ []byte, _ int64, _ int, emit func(Row) error) ([]byte, bool, error) {
	key := AppendKeyInt(nil, 1)
	return key, true, emit(Row{Key: key, Doc: []byte(`{"id":1}`)})
}

func (db *fenceDB) WriteWatermark(_ context.Context, id string) error {
	if db.silent {
		return nil
	}
	go func() {
		change := &Change{Stream: StreamID{"public", "t"}, Op: OpInsert, Key: AppendKeyInt(nil, 2), Doc: []byte(`{"id":2}`)}
		for end := time.Now().Add(db.busyFor); time.Now().Before(end); {
			db.events <- &Batch{Events: []Event{change}}
			time.Sleep(10 * time.Millisecond)
		}
		db.events <- &Batch{Events: []Event{&Commit{Cursor: "0/2"}, &Watermark{ID: id}, &Commit{Cursor: "0/3"}}}
	}()
	return nil
}

func (db *fenceDB) DescribeStream(context.Context, StreamID) (json.RawMessage, error) {
	return json.RawMessage(`{"type":"object"}`), nil
}

type fenceOutput struct{ stop context.CancelFunc }

func (o *fenceOutput) Captured(uint32, []byte) error      { return nil }
func (o *fenceOutput) SourcedSchema(uint32, []byte) error { return nil }
func (o *fenceOutput) Checkpoint(patch []byte) error {
	if strings.Contains(string(patch), `"mode":"Active"`) {
		o.stop()
	}
	return nil
}

func runFence(t *testing.T, db *fenceDB) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log := logrus.New()
	log.SetOutput(io.Discard)
	binding := Binding{StateKey: "t", Stream: StreamID{"public", "t"}, KeyColumns: []string{"id"}}
	return Run(ctx, db, []Binding{binding}, State{}, &fenceOutput{stop: cancel}, NewAcknowledgements(),
		Options{ChunkSize: 10, FenceTimeout: 300 * time.Millisecond, Logger: log})
}

// A fence waits as long as the stream makes progress, even through one
// transaction that lasts longer than FenceTimeout, and gives up, naming the
// likely cause, only when the stream delivers nothing for that long.
func TestFenceTimeout(t *testing.T) {
	busy := &fenceDB{events: make(chan *Batch, 4), busyFor: time.Second}
	if err := runFence(t, busy); !IsCancellation(err) {
		t.Errorf("a fence behind a long transaction failed: %v", err)
	}
	silent := &fenceDB{events: make(chan *Batch, 4), silent: true}
	if err := runFence(t, silent); err == nil || !strings.Contains(err.Error(), "watermarks table is in the publication") {
		t.Errorf("a fence the stream never delivers should fail naming the watermarks table, got %v", err)
	}
}
