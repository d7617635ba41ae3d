package sqlcapture

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// memDB is an in-memory Database that keeps the engine's contract: one
// table of int keys and int values, a replayable change log, and chunks that
// read the latest committed state. It lets the engine's interleaving logic
// be checked exhaustively; the PostgreSQL implementation is tested against
// a real server elsewhere.
type memDB struct {
	mu     sync.Mutex
	cond   *sync.Cond
	rows   map[int64]int64
	log    []Event // the change stream; a Commit's cursor is its index+1
	stream StreamID
	// raceChunks makes ScanChunk change the chunk's boundary rows.
	raceChunks bool
	// history[i] is the table after the commit whose cursor is i.
	history []map[int64]int64
	// faults, if set, makes connections fail transiently at random.
	faults *faultPlan
	// acknowledged records every position the engine reported as
	// acknowledged, through StartReplication or Acknowledge.
	acknowledged []string
}

// faultPlan decides when the memDB's connections fail.
type faultPlan struct {
	mu  sync.Mutex
	rng *rand.Rand
}

// roll reports true one time in n.
func (f *faultPlan) roll(n int) bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.IntN(n) == 0
}

func (f *faultPlan) intN(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.IntN(n)
}

var errConnReset = Transient(fmt.Errorf("connection reset by peer"))

func newMemDB() *memDB {
	db := &memDB{rows: map[int64]int64{}, stream: StreamID{"public", "t"}}
	db.cond = sync.NewCond(&db.mu)
	db.history = []map[int64]int64{{}}
	return db
}

// memDoc is a document; seq, the position of a change in the log (0 for a
// backfilled row), tells the emissions of one change apart from another's.
func memDoc(op Op, key int64, value *int64, seq int) []byte {
	if value == nil {
		return fmt.Appendf(nil, `{"_meta":{"op":"%c"},"id":%d,"s":%d}`, op, key, seq)
	}
	return fmt.Appendf(nil, `{"_meta":{"op":"%c"},"id":%d,"v":%d,"s":%d}`, op, key, *value, seq)
}

// commit applies a transaction of writes (nil value: delete) atomically.
func (db *memDB) commit(writes map[int64]*int64, moves map[int64]int64) {
	db.mu.Lock()
	defer db.mu.Unlock()
	for from, to := range moves {
		v, ok := db.rows[from]
		if !ok {
			continue
		}
		if _, taken := db.rows[to]; taken {
			continue
		}
		delete(db.rows, from)
		db.rows[to] = v
		db.log = append(db.log,
			&Change{Stream: db.stream, Op: OpDelete, Key: AppendKeyInt(nil, from), Doc: memDoc(OpDelete, from, nil, len(db.log)+1)},
			&Change{Stream: db.stream, Op: OpInsert, Key: AppendKeyInt(nil, to), Doc: memDoc(OpInsert, to, &v, len(db.log)+2)})
	}
	keys := make([]int64, 0, len(writes))
	for k := range writes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := writes[k]
		_, existed := db.rows[k]
		switch {
		case v == nil && existed:
			delete(db.rows, k)
			db.log = append(db.log, &Change{Stream: db.stream, Op: OpDelete, Key: AppendKeyInt(nil, k), Doc: memDoc(OpDelete, k, nil, len(db.log)+1)})
		case v != nil:
			op := OpInsert
			if existed {
				op = OpUpdate
			}
			db.rows[k] = *v
			db.log = append(db.log, &Change{Stream: db.stream, Op: op, Key: AppendKeyInt(nil, k), Doc: memDoc(op, k, v, len(db.log)+1)})
		}
	}
	db.appendCommit()
}

func (db *memDB) appendCommit() {
	db.log = append(db.log, &Commit{Cursor: strconv.Itoa(len(db.log) + 1)})
	for len(db.history) < len(db.log) {
		db.history = append(db.history, nil)
	}
	db.history = append(db.history, maps(db.rows))
	db.cond.Broadcast()
}

func maps(m map[int64]int64) map[int64]int64 {
	out := make(map[int64]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (db *memDB) ScanChunk(ctx context.Context, stream StreamID, after []byte, offset int64, limit int, emit func(Row) error) ([]byte, bool, error) {
	return db.scan(after, nil, limit, emit)
}

// scan reads up to limit rows after after and at or before until (nil: no
// bound).
func (db *memDB) scan(after, until []byte, limit int, emit func(Row) error) ([]byte, bool, error) {
	db.mu.Lock()
	var keys []int64
	for k := range db.rows {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var rows []Row
	for _, k := range keys {
		key := AppendKeyInt(nil, k)
		if after != nil && string(key) <= string(after) {
			continue
		}
		if until != nil && string(key) > string(until) {
			break
		}
		v := db.rows[k]
		rows = append(rows, Row{Key: key, Doc: memDoc(OpInsert, k, &v, 0)})
		if len(rows) == limit {
			break
		}
	}
	db.mu.Unlock()
	// A failing connection fails after any number of the rows, or at the
	// commit after all of them.
	failAt := -1
	if db.faults.roll(4) {
		failAt = db.faults.intN(len(rows) + 1)
	}
	for i, r := range rows {
		if i == failAt {
			return nil, false, errConnReset
		}
		if err := emit(r); err != nil {
			return nil, false, err
		}
	}
	if failAt == len(rows) {
		return nil, false, errConnReset
	}
	// Race the fence the way a busy application would: change the chunk's
	// boundary keys (its last row, and the next key beyond it) right after
	// the read, before the engine writes its watermark.
	if db.raceChunks && len(rows) > 0 {
		elems, _ := DecodeKey(rows[len(rows)-1].Key)
		last := elems[0].(int64)
		v1, v2 := last+1000, last+2000
		db.commit(map[int64]*int64{last: &v1, last + 1: &v2}, nil)
	}
	if len(rows) == 0 {
		return after, true, nil
	}
	return rows[len(rows)-1].Key, len(rows) < limit, nil
}

func (db *memDB) DescribeStream(context.Context, StreamID) (json.RawMessage, error) {
	return json.RawMessage(`{"type":"object"}`), nil
}

func (db *memDB) WriteWatermark(ctx context.Context, id string) error {
	if db.faults.roll(10) {
		return errConnReset
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.log = append(db.log, &Watermark{ID: id})
	db.appendCommit()
	if db.faults.roll(10) {
		return errConnReset // committed, but the reply was lost
	}
	return nil
}

func (db *memDB) Reconnect(context.Context) error {
	if db.faults.roll(5) {
		return Transient(fmt.Errorf("connection refused"))
	}
	return nil
}

func (db *memDB) StartReplication(ctx context.Context, cursor, acknowledged string) (ReplicationStream, error) {
	if db.faults.roll(5) {
		return nil, Transient(fmt.Errorf("the database system is starting up"))
	}
	db.mu.Lock()
	db.acknowledged = append(db.acknowledged, acknowledged)
	db.mu.Unlock()
	// A failing stream delivers some events, then fails.
	failAfter := -1
	if db.faults != nil {
		failAfter = db.faults.intN(500)
	}
	start := 0
	if cursor != "" {
		var err error
		if start, err = strconv.Atoi(cursor); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &memStream{db: db, events: make(chan *Batch, 8), cancel: cancel}
	go func() {
		defer close(s.events)
		stop := context.AfterFunc(ctx, func() {
			db.mu.Lock()
			db.cond.Broadcast()
			db.mu.Unlock()
		})
		defer stop()
		for i := start; ; i++ {
			if i-start == failAfter {
				s.err = errConnReset
				return
			}
			db.mu.Lock()
			for i >= len(db.log) && ctx.Err() == nil {
				db.cond.Wait()
			}
			if ctx.Err() != nil {
				db.mu.Unlock()
				return
			}
			ev := db.log[i]
			db.mu.Unlock()
			select {
			case s.events <- &Batch{Events: []Event{ev}}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return s, nil
}

type memStream struct {
	db     *memDB
	events chan *Batch
	cancel context.CancelFunc
	err    error // set before events is closed
}

func (s *memStream) Events() <-chan *Batch { return s.events }
func (s *memStream) Release(*Batch)        {}
func (s *memStream) Err() error            { return s.err }
func (s *memStream) Acknowledge(_ context.Context, c string) error {
	s.db.mu.Lock()
	s.db.acknowledged = append(s.db.acknowledged, c)
	s.db.mu.Unlock()
	return nil
}
func (s *memStream) Close(context.Context) error { s.cancel(); return nil }

// recorder is an Output that keeps committed checkpoints, acknowledging
// each one as the runtime would.
type recorder struct {
	mu          sync.Mutex
	acks        *Acknowledgements
	pending     []json.RawMessage
	checkpoints []recordedCheckpoint
	// emitted holds the log position of every change emitted.
	emitted map[int]int
	dup     string
}

type recordedCheckpoint struct {
	docs  []json.RawMessage
	patch json.RawMessage
}

func (r *recorder) Captured(_ uint32, doc []byte) error {
	var d testDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = append(r.pending, slices.Clone(doc))
	if d.S > 0 {
		if r.emitted == nil {
			r.emitted = map[int]int{}
		}
		r.emitted[d.S]++
		if r.emitted[d.S] > 1 && r.dup == "" {
			r.dup = string(doc)
		}
	}
	return nil
}

func (r *recorder) SourcedSchema(uint32, []byte) error { return nil }

func (r *recorder) Checkpoint(patch []byte) error {
	r.mu.Lock()
	r.checkpoints = append(r.checkpoints, recordedCheckpoint{docs: r.pending, patch: slices.Clone(patch)})
	r.pending = nil
	r.mu.Unlock()
	r.acks.Add(1)
	return nil
}

type testDoc struct {
	Meta struct {
		Op string `json:"op"`
	} `json:"_meta"`
	ID int64  `json:"id"`
	V  *int64 `json:"v"`
	S  int    `json:"s"`
}

// reduce folds documents by key as the collection's reductions do.
func reduce(into map[int64]int64, docs []json.RawMessage) error {
	for _, raw := range docs {
		var d testDoc
		if err := json.Unmarshal(raw, &d); err != nil {
			return err
		}
		if d.Meta.Op == "d" {
			delete(into, d.ID)
		} else {
			into[d.ID] = *d.V
		}
	}
	return nil
}

func applyPatch(t *testing.T, state *State, patch json.RawMessage) {
	t.Helper()
	var p struct {
		Cursor  string                     `json:"cursor"`
		Streams map[string]json.RawMessage `json:"streams"`
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		t.Fatal(err)
	}
	if p.Cursor != "" {
		state.Cursor = p.Cursor
	}
	for k, raw := range p.Streams {
		if string(raw) == "null" {
			delete(state.Streams, k)
			continue
		}
		var s StreamState
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		if state.Streams == nil {
			state.Streams = map[string]*StreamState{}
		}
		state.Streams[k] = &s
	}
}

// TestInterleavingModel runs the engine against concurrent random writes,
// killing and restarting it from its last committed checkpoint, and checks
// that the committed documents, reduced by key, equal the table at every
// checkpoint once it is backfilled, and at the end.
func TestInterleavingModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runModel(t, seed, false, 0) })
	}
}

// TestInterleavingModelWithFaults is TestInterleavingModel with connections
// failing transiently at random: the stream after any event (inside a
// transaction too), a chunk after any of its rows, a watermark before or
// after it commits, reconnections. The engine reconnects in-process, and on
// top of the model's checks no change may be emitted twice in a session,
// and every position reported as acknowledged must be one of a checkpoint.
func TestInterleavingModelWithFaults(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runModel(t, seed, true, 0) })
	}
}

// runModel runs the model; with conns > 0 the database reads ranges, and
// the engine up to conns chunks at once.
func runModel(t *testing.T, seed uint64, faulty bool, conns int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	mem := newMemDB()
	var db Database = mem
	var ranged *rangedDB
	if conns > 0 {
		ranged = &rangedDB{memDB: mem, conns: conns}
		db = ranged
	}
	mem.raceChunks = seed%2 == 0
	// Rows before the capture starts.
	initial := map[int64]*int64{}
	for k := range int64(rng.IntN(200)) {
		v := rng.Int64N(1000)
		initial[k*2] = &v
	}
	mem.commit(initial, nil)

	writerCtx, stopWriter := context.WithCancel(context.Background())
	defer stopWriter()
	var writerDone sync.WaitGroup
	writerDone.Add(1)
	go func() {
		defer writerDone.Done()
		wrng := rand.New(rand.NewPCG(seed, 11))
		for writerCtx.Err() == nil {
			writes := map[int64]*int64{}
			moves := map[int64]int64{}
			for range 1 + wrng.IntN(4) {
				k := wrng.Int64N(300)
				switch wrng.IntN(10) {
				case 0, 1:
					writes[k] = nil
				case 2:
					moves[k] = wrng.Int64N(300)
				default:
					v := wrng.Int64N(1000)
					writes[k] = &v
				}
			}
			mem.commit(writes, moves)
			time.Sleep(time.Duration(wrng.IntN(200)) * time.Microsecond)
		}
	}()

	var state State
	reduced := map[int64]int64{}
	binding := Binding{Index: 0, StateKey: "public%2Ft", Stream: mem.stream, KeyColumns: []string{"id"}}
	log := logrus.New()
	// Reconnections are warnings, hundreds of them here: MODEL_DEBUG=1 shows them.
	log.SetLevel(logrus.ErrorLevel)
	if os.Getenv("MODEL_DEBUG") != "" {
		log.SetLevel(logrus.DebugLevel)
	}
	for session := 0; ; session++ {
		last := session == 6
		if last {
			stopWriter()
			writerDone.Wait()
		}
		acks := NewAcknowledgements()
		rec := &recorder{acks: acks}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		opts := Options{ChunkSize: 1 + rng.IntN(40), CoalesceDocs: 1 + rng.IntN(8), Logger: log, RetryDelay: 10 * time.Microsecond, RetryTimeout: time.Minute, BackfillConnections: conns}
		mem.mu.Lock()
		if faulty {
			mem.faults = &faultPlan{rng: rand.New(rand.NewPCG(seed, uint64(session)))}
		}
		mem.acknowledged = nil
		mem.mu.Unlock()
		go func() {
			errc <- Run(ctx, db, []Binding{binding}, state, rec, acks, opts)
		}()
		// Let this session run for a while (or, finally, to completion),
		// then kill it: only its checkpoints count, as with the runtime.
		deadline := time.Now().Add(time.Duration(1+rng.IntN(30)) * time.Millisecond)
		if last {
			deadline = time.Now().Add(20 * time.Second)
		}
		for time.Now().Before(deadline) {
			if last && caughtUp(t, mem, rec, state) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-errc; err != nil && !IsCancellation(err) {
			t.Fatalf("session %d: %v", session, err)
		}
		if ranged != nil && ranged.overlap != "" {
			t.Fatalf("session %d: %s", session, ranged.overlap)
		}
		if rec.dup != "" {
			t.Fatalf("session %d emitted a change twice: %s", session, rec.dup)
		}
		cursors := map[string]bool{state.Cursor: true}
		for i, cp := range rec.checkpoints {
			if err := reduce(reduced, cp.docs); err != nil {
				t.Fatal(err)
			}
			applyPatch(t, &state, cp.patch)
			cursors[state.Cursor] = true
			st := state.Streams[binding.StateKey]
			if st == nil || state.Cursor == "" {
				continue
			}
			cursor, _ := strconv.Atoi(state.Cursor)
			mem.mu.Lock()
			want := mem.history[cursor]
			mem.mu.Unlock()
			// Every key the backfill has reached must hold its value as of
			// the checkpoint's cursor; once backfilled, every key must.
			got, exp := reduced, want
			if st.Mode == ModeBackfill {
				got, exp = covered(reduced, st), covered(want, st)
			}
			if !equalMaps(got, exp) {
				t.Fatalf("session %d checkpoint %d at cursor %d (%s): collection differs from the table:\n got %v\nwant %v", session, i, cursor, st.Mode, got, exp)
			}
		}
		mem.mu.Lock()
		for _, a := range mem.acknowledged {
			if !cursors[a] {
				t.Errorf("session %d reported %q as acknowledged, which is no checkpoint's cursor", session, a)
			}
		}
		mem.mu.Unlock()
		if last {
			if !caughtUp(t, mem, rec, state) {
				t.Fatalf("the capture did not catch up")
			}
			mem.mu.Lock()
			defer mem.mu.Unlock()
			if !equalMaps(reduced, mem.rows) {
				t.Fatalf("final collection differs from the table:\n got %v\nwant %v", reduced, mem.rows)
			}
			return
		}
	}
}

// caughtUp reports whether the capture has backfilled and checkpointed
// everything committed, counting this session's checkpoints.
func caughtUp(t *testing.T, db *memDB, rec *recorder, prev State) bool {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	st := prev
	st.Streams = map[string]*StreamState{}
	for k, v := range prev.Streams {
		c := *v
		st.Streams[k] = &c
	}
	for _, cp := range rec.checkpoints {
		applyPatch(t, &st, cp.patch)
	}
	db.mu.Lock()
	end := strconv.Itoa(len(db.log))
	db.mu.Unlock()
	s := st.Streams["public%2Ft"]
	return s != nil && s.Mode == ModeActive && st.Cursor == end
}

// covered keeps the entries whose key the backfill state says is read.
func covered(m map[int64]int64, st *StreamState) map[int64]int64 {
	b := &binding{Binding: Binding{KeyColumns: []string{"id"}}, state: *st}
	out := map[int64]int64{}
	for k, v := range m {
		if b.emits(AppendKeyInt(nil, k)) {
			out[k] = v
		}
	}
	return out
}

func equalMaps(a, b map[int64]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
