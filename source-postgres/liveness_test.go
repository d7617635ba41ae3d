package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgcapture/testsupport"
)

// Network faults between the connector and the server, injected by a
// fault proxy (or by signalling the server): each is noticed within a
// bounded time and recovered from inside the process, with every row
// captured exactly as the table holds it and no replicated change emitted
// twice. The connector runs with a 2s network timeout.
//
// Detection is measured from the fault to the connector's first
// "reconnecting" warning; recovery from the fault's end to the capture of a
// row written then. Both are logged.
func TestNetworkFaults(t *testing.T) {
	pg := testsupport.StartPostgres(t, testsupport.Options{})
	const timeout = 2 * time.Second
	// How much later than the deadline detection may come: the watchdog's
	// tick (timeout/4) and the closing of the connection.
	const slack = 3 * time.Second

	t.Run("blackhole while streaming", func(t *testing.T) {
		r := startLiveRun(t, pg, nil, nil)
		r.waitStreaming(t)
		begin := time.Now()
		r.proxy.Blackhole()
		r.write(t, 20)
		detected := r.waitDetection(t, begin, timeout+slack)
		// The deadline counts from the last message, up to a watchdog
		// tick before the blackhole.
		if detected < timeout/2 {
			t.Errorf("the silence was reported after %s, before the %s deadline", detected, timeout)
		}
		r.proxy.Heal()
		r.waitRecovery(t, time.Now(), begin)
		r.check(t)
	})

	t.Run("cut during backfill", func(t *testing.T) {
		r := startLiveRun(t, pg, func(f *fixture) {
			f.exec(t, `INSERT INTO public.live SELECT g, 0 FROM generate_series(1, 3000) g; ANALYZE public.live`)
			f.advanced["backfill_chunk_size"] = 40
			// Two connections, and statistics to split by: the cuts land
			// in rounds of two key ranges, whose failed chunks are read
			// again on the connection that survived.
			f.advanced["backfill_connections"] = 2
		}, nil)
		stop := r.writeInBackground(t)
		for i := range 3 {
			// Wait for the backfill to move on (after the connector's
			// reconnection, if any), then cut it in the middle of a chunk.
			n := len(r.s.Checkpoints())
			r.s.WaitFor(t, 30*time.Second, "the backfill to move on", func(s *testsupport.Session) bool { return len(s.Checkpoints()) > n+i })
			begin := time.Now()
			r.proxy.Cut()
			r.waitDetectionN(t, begin, i+1, slack)
		}
		stop()
		r.waitRecovery(t, time.Now(), time.Now())
		// The row written after the faults is captured by the backfill's
		// last chunks; the chunk that finds nothing more may come after.
		r.s.WaitFor(t, 60*time.Second, "the backfill to complete", func(s *testsupport.Session) bool {
			return !backfilling(t, s.State(), r.bindings)
		})
		t.Logf("%d chunks resumed after their last emitted row", strings.Count(r.s.Stderr(), "resuming the backfill chunk"))
		if !strings.Contains(r.s.Stderr(), "backfilling the table in ranges read at once") {
			t.Error("the backfill was never split into ranges, so the cuts did not land in parallel rounds")
		}
		r.check(t)
	})

	t.Run("cut while streaming", func(t *testing.T) {
		r := startLiveRun(t, pg, nil, nil)
		r.waitStreaming(t)
		stop := r.writeInBackground(t)
		for i := range 3 {
			n := len(r.s.Checkpoints())
			r.s.WaitFor(t, 30*time.Second, "the capture to stream on", func(s *testsupport.Session) bool { return len(s.Checkpoints()) > n+2 })
			begin := time.Now()
			r.proxy.Cut()
			r.waitDetectionN(t, begin, i+1, slack)
		}
		stop()
		r.waitRecovery(t, time.Now(), time.Now())
		r.check(t)
	})

	t.Run("immediate shutdown and restart", func(t *testing.T) {
		r := startLiveRun(t, pg, nil, nil)
		r.waitStreaming(t)
		r.write(t, 10)
		begin := time.Now()
		pg.StopImmediate(t)
		r.waitDetection(t, begin, slack)
		pg.Start(t)
		restarted := time.Now()
		r.f.conn = pg.Connect(t, r.f.db) // the test's own connection died too
		r.write(t, 10)
		r.waitRecovery(t, restarted, begin)
		r.check(t)
	})

	t.Run("pause shorter than the deadline", func(t *testing.T) {
		r := startLiveRun(t, pg, nil, nil)
		r.waitStreaming(t)
		pg.Pause(t)
		// A pause of half the deadline, timed by the test's own clock: the
		// point is that nothing happens during it.
		paused := time.NewTimer(timeout / 2)
		<-paused.C
		pg.Resume(t)
		r.write(t, 5)
		r.waitRecovery(t, time.Now(), time.Now())
		if n := r.reconnections(); n != 0 {
			t.Errorf("a pause of %s, under the %s deadline, made the connector reconnect %d times:\n%s", timeout/2, timeout, n, tailLines(r.s.Stderr(), 10))
		}
		r.check(t)
	})

	t.Run("pause longer than the deadline", func(t *testing.T) {
		r := startLiveRun(t, pg, nil, nil)
		r.waitStreaming(t)
		begin := time.Now()
		pg.Pause(t)
		resumed := false
		defer func() {
			if !resumed {
				pg.Resume(t)
			}
		}()
		r.waitDetection(t, begin, timeout+slack)
		pg.Resume(t)
		resumed = true
		cont := time.Now()
		r.write(t, 10)
		r.waitRecovery(t, cont, begin)
		r.check(t)
	})

	t.Run("blackhole through the SSH tunnel", func(t *testing.T) {
		private, public := testsupport.GenerateKey(t, "ed25519-openssh")
		sshd := testsupport.StartSSHD(t, public)
		u, err := url.Parse(sshd.Endpoint())
		if err != nil {
			t.Fatal(err)
		}
		user, sshAddr := u.User.Username(), u.Host
		sshProxy := testsupport.StartFaultProxy(t, sshAddr)
		r := startLiveRun(t, pg, nil, map[string]any{"sshForwarding": map[string]any{
			"sshEndpoint": "ssh://" + user + "@" + sshProxy.Addr(), "privateKey": private, "hostKey": sshd.HostKey(),
		}})
		r.waitStreaming(t)
		begin := time.Now()
		sshProxy.Blackhole()
		r.write(t, 10)
		r.waitDetection(t, begin, timeout+slack)
		sshProxy.Heal()
		r.waitRecovery(t, time.Now(), begin)
		r.check(t)
	})
}

// liveRun is one capture of public.live through a fault proxy.
type liveRun struct {
	f        *fixture
	proxy    *testsupport.FaultProxy
	s        *testsupport.Session
	bindings []testsupport.Binding
	next     atomic.Int64 // the next id to insert
}

// startLiveRun creates public.live, lets setup adjust the fixture, and
// opens a capture of it with a short network timeout through a fault proxy,
// or through tunnel if set (whose proxy is the caller's).
func startLiveRun(t *testing.T, pg *testsupport.Postgres, setup func(*fixture), tunnel map[string]any) *liveRun {
	f := newFixtureOn(t, pg)
	f.exec(t, `CREATE TABLE public.live (id bigint PRIMARY KEY, n bigint NOT NULL)`)
	f.advanced["network_timeout"] = "2s"
	f.advanced["retry_timeout"] = "60s"
	if setup != nil {
		setup(f)
	}
	r := &liveRun{f: f, bindings: []testsupport.Binding{{Namespace: "public", Stream: "live", Key: []string{"/id"}}}}
	r.next.Store(100000)
	cfg := f.config()
	if tunnel != nil {
		cfg["networkTunnel"] = tunnel
	} else {
		r.proxy = testsupport.StartFaultProxy(t, pg.Addr())
		cfg["address"] = r.proxy.Addr()
	}
	r.s = f.connector.Open(t, testsupport.OpenRequest(cfg, r.bindings, nil), testsupport.SessionOptions{AutoAck: true})
	t.Cleanup(r.s.Kill)
	return r
}

// write commits transactions of three changes each: an insert, an update
// of that row and an update of an older one, so a cut may fall inside one.
func (r *liveRun) write(t *testing.T, n int) {
	t.Helper()
	for range n {
		if err := writeTxn(r.f.conn, r.next.Add(1)); err != nil {
			t.Fatalf("writing: %v", err)
		}
	}
}

// writeTxn inserts row id and updates it and two older rows in one
// transaction.
func writeTxn(conn *pgx.Conn, id int64) error {
	return pgx.BeginFunc(context.Background(), conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(context.Background(), `INSERT INTO public.live VALUES ($1, 0)`, id); err != nil {
			return err
		}
		_, err := tx.Exec(context.Background(), `UPDATE public.live SET n = n + 1 WHERE id = $1 OR id = $1 - 7 OR id = ($1 * 7919) % 3000 + 1`, id)
		return err
	})
}

// writeInBackground writes until the returned function is called.
func (r *liveRun) writeInBackground(t *testing.T) (stop func()) {
	conn := r.f.pg.Connect(t, r.f.db) // the fixture's is not for concurrent use
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if err := writeTxn(conn, r.next.Add(1)); err != nil {
				t.Errorf("writing: %v", err)
				return
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// waitStreaming waits until the table is backfilled.
func (r *liveRun) waitStreaming(t *testing.T) {
	t.Helper()
	r.s.WaitFor(t, 30*time.Second, "the backfill to complete", func(s *testsupport.Session) bool {
		return !backfilling(t, s.State(), r.bindings)
	})
}

// reconnections counts the connector's reconnection warnings so far.
func (r *liveRun) reconnections() int {
	return strings.Count(r.s.Stderr(), "reconnecting")
}

// waitDetection waits for the first reconnection warning, at most within,
// and returns how long after begin it came.
func (r *liveRun) waitDetection(t *testing.T, begin time.Time, within time.Duration) time.Duration {
	t.Helper()
	return r.waitDetectionN(t, begin, 1, within)
}

func (r *liveRun) waitDetectionN(t *testing.T, begin time.Time, n int, within time.Duration) time.Duration {
	t.Helper()
	deadline := begin.Add(within)
	for r.reconnections() < n {
		if exited, err := r.s.Exited(); exited {
			t.Fatalf("the connector exited (%v) instead of reconnecting:\n%s", err, tailLines(r.s.Stderr(), 15))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fault was not detected within %s:\n%s", within, tailLines(r.s.Stderr(), 15))
		}
		time.Sleep(10 * time.Millisecond)
	}
	d := time.Since(begin)
	t.Logf("detected after %s", d.Round(10*time.Millisecond))
	return d
}

// waitRecovery writes a marker row and waits until a checkpoint commits it,
// logging how long that took from healed (the fault's end) and from begin
// (its start).
func (r *liveRun) waitRecovery(t *testing.T, healed, begin time.Time) {
	t.Helper()
	marker := r.next.Add(1)
	r.f.exec(t, `INSERT INTO public.live VALUES ($1, -1)`, marker)
	needle := fmt.Sprintf(`"id":%d,`, marker)
	r.s.WaitFor(t, 60*time.Second, "a row written after the fault to be captured", func(s *testsupport.Session) bool {
		for _, cp := range s.Checkpoints() {
			for _, d := range cp.Docs {
				if strings.Contains(string(d.Doc), needle) {
					return true
				}
			}
		}
		return false
	})
	if exited, err := r.s.Exited(); exited {
		t.Fatalf("the connector exited: %v", err)
	}
	t.Logf("recovered %s after the fault ended (%s after it began), %d reconnection attempts",
		time.Since(healed).Round(10*time.Millisecond), time.Since(begin).Round(10*time.Millisecond), r.reconnections())
}

// check compares the committed documents, reduced by key, with the table,
// and checks that no replicated change was committed twice.
func (r *liveRun) check(t *testing.T) {
	t.Helper()
	n := len(r.s.Checkpoints())
	docs := committedDocs(r.s, n)[0]
	d := diffAgainstTable(t, r.f, docs, []string{"/id"}, `SELECT json_build_array(id)::text, json_build_object('id', id, 'n', n)::text FROM public.live`)
	if !d.ok() {
		t.Errorf("the committed documents differ from the table: %s", d)
	}
	seen := map[string]bool{}
	dups := 0
	for _, raw := range docs {
		doc := parseDoc(t, raw)
		if doc.Meta.Source.Snapshot {
			continue
		}
		loc := doc.Meta.Source.Loc
		id := fmt.Sprintf("%s %v %v %v", doc.Meta.Op, loc[1], loc[2], doc.Fields["id"])
		if seen[id] {
			dups++
			if dups < 5 {
				t.Errorf("change emitted twice: %s", raw)
			}
		}
		seen[id] = true
	}
	t.Logf("%d documents in %d checkpoints, %d replicated changes, %s", len(docs), n, len(seen), d)
}
