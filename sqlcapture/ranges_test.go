package sqlcapture

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// rangedDB is a memDB that reads ranges, over conns connections, and
// records whether two chunks ever used one connection at once.
type rangedDB struct {
	*memDB
	conns int

	busyMu  sync.Mutex
	busy    map[int]bool
	used    map[int]bool
	overlap string
}

func (db *rangedDB) SplitStream(_ context.Context, _ StreamID, after []byte, n int) ([][]byte, error) {
	if db.faults.roll(5) {
		return nil, errConnReset
	}
	db.mu.Lock()
	var keys [][]byte
	for k := range db.rows {
		if key := AppendKeyInt(nil, k); after == nil || string(key) > string(after) {
			keys = append(keys, key)
		}
	}
	db.mu.Unlock()
	slices.SortFunc(keys, slices.Compare)
	var bounds [][]byte
	for i := 1; i < n && len(keys) >= n; i++ {
		bounds = append(bounds, keys[i*len(keys)/n])
	}
	return slices.CompactFunc(bounds, func(a, b []byte) bool { return string(a) == string(b) }), nil
}

func (db *rangedDB) ScanRange(_ context.Context, conn int, _ StreamID, after, until []byte, _ int64, limit int, emit func(Row) error) ([]byte, bool, error) {
	db.busyMu.Lock()
	if conn < 0 || conn >= db.conns || db.busy[conn] {
		if db.overlap == "" {
			db.overlap = fmt.Sprintf("connection %d used while busy or beyond the limit of %d", conn, db.conns)
		}
	}
	if db.busy == nil {
		db.busy = map[int]bool{}
	}
	db.busy[conn] = true
	if db.used == nil {
		db.used = map[int]bool{}
	}
	db.used[conn] = true
	db.busyMu.Unlock()
	defer func() {
		db.busyMu.Lock()
		delete(db.busy, conn)
		db.busyMu.Unlock()
	}()
	return db.scan(after, until, limit, emit)
}

// TestInterleavingModelInRanges is the interleaving model with the table
// split into ranges read at once, over 2 to 4 connections.
func TestInterleavingModelInRanges(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runModel(t, seed, false, 2+int(seed%3)) })
	}
}

// TestInterleavingModelInRangesWithFaults adds transient failures of any
// connection at any row.
func TestInterleavingModelInRangesWithFaults(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runModel(t, seed, true, 2+int(seed%3)) })
	}
}

// TestRangesInCheckpoints follows a split backfill's state through its
// checkpoints: the split is recorded with every range, the ranges advance,
// and the checkpoint that completes the table writes them as null, so that
// a merge patch clears them. The chunks of a round use distinct
// connections, several at once.
func TestRangesInCheckpoints(t *testing.T) {
	mem := memDBOfKeys(100)
	db := &rangedDB{memDB: mem, conns: 3}
	acks := NewAcknowledgements()
	rec := &recorder{acks: acks}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := Binding{StateKey: "t", Stream: mem.stream, KeyColumns: []string{"id"}, EstimatedRows: 100}
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, db, []Binding{b}, State{}, rec, acks, Options{ChunkSize: 10, BackfillConnections: 3, Logger: quietLog()})
	}()
	var state State
	var sawSplit bool
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		rec.mu.Lock()
		n := len(rec.checkpoints)
		rec.mu.Unlock()
		if i < n {
			rec.mu.Lock()
			cp := rec.checkpoints[i]
			rec.mu.Unlock()
			if err := state.Apply(cp.patch); err != nil {
				t.Fatal(err)
			}
			st := state.Streams["t"]
			if st != nil && len(st.Ranges) == 3 {
				sawSplit = true
			}
			if st != nil && st.Mode == ModeActive {
				var raw struct {
					Streams map[string]map[string]json.RawMessage `json:"streams"`
				}
				if err := json.Unmarshal(cp.patch, &raw); err != nil {
					t.Fatal(err)
				}
				if string(raw.Streams["t"]["ranges"]) != "null" {
					t.Fatalf("the checkpoint completing the backfill does not clear the ranges: %s", cp.patch)
				}
				if len(st.Ranges) != 0 {
					t.Fatalf("ranges left after the backfill: %+v", st.Ranges)
				}
				break
			}
			continue
		}
		select {
		case err := <-errc:
			t.Fatalf("capture ended: %v", err)
		default:
		}
		waitABit(t, deadline)
		i--
	}
	cancel()
	if err := <-errc; err != nil && !IsCancellation(err) {
		t.Fatal(err)
	}
	if !sawSplit {
		t.Fatal("no checkpoint recorded the backfill split into 3 ranges")
	}
	if db.overlap != "" {
		t.Fatal(db.overlap)
	}
	if len(db.used) != db.conns {
		t.Fatalf("chunks were read over %d connections, want %d", len(db.used), db.conns)
	}
	got := map[int64]int64{}
	rec.mu.Lock()
	for _, cp := range rec.checkpoints {
		if err := reduce(got, cp.docs); err != nil {
			t.Fatal(err)
		}
	}
	rec.mu.Unlock()
	if !equalMaps(got, mem.rows) {
		t.Fatalf("collection differs from the table:\n got %v\nwant %v", got, mem.rows)
	}
}

// TestOldStateResumesSplit resumes a state written before ranges existed
// (one position, no ranges) with several connections: the rest of the
// table is split after the old position, and nothing before it is read
// again.
func TestOldStateResumesSplit(t *testing.T) {
	mem := memDBOfKeys(100)
	db := &rangedDB{memDB: mem, conns: 4}
	state, err := ParseState(json.RawMessage(fmt.Sprintf(`{"cursor":"%d","streams":{"t":{"mode":"Backfill","key_columns":["id"],"scanned":%q,"backfilled":40}}}`,
		len(mem.log), mustJSON(t, AppendKeyInt(nil, 39)))))
	if err != nil {
		t.Fatal(err)
	}
	acks := NewAcknowledgements()
	rec := &recorder{acks: acks}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := Binding{StateKey: "t", Stream: mem.stream, KeyColumns: []string{"id"}}
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, db, []Binding{b}, state, rec, acks, Options{ChunkSize: 8, BackfillConnections: 4, Logger: quietLog()})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rec.mu.Lock()
		st := state
		st.Streams = map[string]*StreamState{"t": state.Streams["t"]}
		for _, cp := range rec.checkpoints {
			if err := st.Apply(cp.patch); err != nil {
				t.Fatal(err)
			}
		}
		rec.mu.Unlock()
		if st.Streams["t"].Mode == ModeActive {
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("capture ended: %v", err)
		default:
		}
		waitABit(t, deadline)
	}
	cancel()
	if err := <-errc; err != nil && !IsCancellation(err) {
		t.Fatal(err)
	}
	got := map[int64]int64{}
	rec.mu.Lock()
	for _, cp := range rec.checkpoints {
		if err := reduce(got, cp.docs); err != nil {
			t.Fatal(err)
		}
	}
	rec.mu.Unlock()
	if len(got) != 60 {
		t.Fatalf("emitted %d rows, want the 60 after the old position", len(got))
	}
	for k := range got {
		if k < 40 {
			t.Fatalf("row %d, before the old position, was read again", k)
		}
	}
	if len(db.used) != db.conns {
		t.Fatalf("chunks were read over %d connections, want %d", len(db.used), db.conns)
	}
}

// waitABit fails the test past deadline, and otherwise pauses briefly
// before a condition is checked again.
func waitABit(t *testing.T, deadline time.Time) {
	t.Helper()
	if time.Now().After(deadline) {
		t.Fatal("timed out waiting for the backfill to complete")
	}
	time.Sleep(time.Millisecond)
}

func quietLog() logrus.FieldLogger {
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	return log
}

func mustJSON(t *testing.T, b []byte) string {
	t.Helper()
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestParseStateRejectsRangesOutOfOrder: a state whose ranges are not in
// order is refused with what is wrong, not followed.
func TestParseStateRejectsRangesOutOfOrder(t *testing.T) {
	k := func(n int64) string { return fmt.Sprintf("%q", mustJSON(t, AppendKeyInt(nil, n))) }
	for name, tc := range map[string]string{
		"last has an end":   `[{"end":` + k(5) + `,"scanned":null,"done":false}]`,
		"middle has no end": `[{"end":null,"scanned":null,"done":false},{"end":null,"scanned":null,"done":false}]`,
		"ends decrease":     `[{"end":` + k(9) + `,"scanned":null,"done":false},{"end":` + k(5) + `,"scanned":null,"done":false},{"end":null,"scanned":null,"done":false}]`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseState(json.RawMessage(`{"streams":{"t":{"mode":"Backfill","scanned":null,"backfilled":0,"ranges":` + tc + `}}}`))
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// memDBOfKeys is a memDB whose table holds the keys 0 to n-1, each with
// its own value, committed at once.
func memDBOfKeys(n int64) *memDB {
	mem := newMemDB()
	rows := map[int64]*int64{}
	for k := range n {
		v := k
		rows[k] = &v
	}
	mem.commit(rows, nil)
	return mem
}
