package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"pgcapture/protocol"
	"pgcapture/source-postgres/pgversion"
	"pgcapture/testsupport"
)

// standbyPair starts a primary and a streaming standby of it, with a
// fixture on the primary, whose database and publication the standby
// replays. It skips the test before PostgreSQL 16, which cannot decode on
// a standby.
func standbyPair(t *testing.T, primaryOpts testsupport.Options, standbySettings map[string]string) (*fixture, *testsupport.Postgres) {
	t.Helper()
	skipWithout(t, pgversion.LogicalDecodingOnStandby, "cannot decode on a standby (new in 16)")
	primary := testsupport.StartPostgres(t, primaryOpts)
	f := newFixtureOn(t, primary)
	return f, primary.StartStandby(t, testsupport.StandbyOptions{Settings: standbySettings})
}

// skipWithout skips the test when the servers the tests run lack feature,
// asking the shared server before any cluster of the test's own starts.
func skipWithout(t *testing.T, feature pgversion.Feature, why string) {
	t.Helper()
	s, err := pgversion.Read(t.Context(), testsupport.SharedPostgres(t).Connect(t, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Has(feature) {
		t.Skipf("PostgreSQL %s %s", s.Version, why)
	}
}

// onStandby is the fixture's configuration pointed at the standby.
func (f *fixture) onStandby(standby *testsupport.Postgres) map[string]any {
	cfg := f.config()
	cfg["address"] = standby.Addr()
	return cfg
}

// TestCaptureFromStandby backfills a table from a standby in small chunks
// while the primary keeps updating, inserting and deleting its rows, then
// streams: the collection equals the table, and no change is emitted twice.
// The standby cannot be written, so every chunk is fenced at the standby's
// replay position (postgres/standby.go); without the fence, changes racing
// a chunk would be lost or leave stale rows.
func TestCaptureFromStandby(t *testing.T) {
	t.Parallel()
	f, standby := standbyPair(t, testsupport.Options{}, map[string]string{"hot_standby_feedback": "on"})
	f.exec(t, `CREATE TABLE public.t (id int PRIMARY KEY, v int NOT NULL)`)
	f.exec(t, `INSERT INTO public.t SELECT g, 0 FROM generate_series(1, 400) g`)
	standby.WaitReplayed(t, f.pg)

	// The primary is written throughout; each round also logs its running
	// transactions, which the slot's creation on the standby waits for.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		conn := f.pg.Connect(t, f.db)
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			default:
			}
			var err error
			switch rng.IntN(4) {
			// Keys stay within 1 to 500, so that the backfill does not chase
			// a growing table.
			case 0:
				_, err = conn.Exec(ctx, `INSERT INTO public.t VALUES ($1, 0) ON CONFLICT (id) DO NOTHING`, 1+rng.IntN(500))
			case 1:
				_, err = conn.Exec(ctx, `DELETE FROM public.t WHERE id = $1`, 1+rng.IntN(500))
			default:
				_, err = conn.Exec(ctx, `UPDATE public.t SET v = v + 1 WHERE id = $1`, 1+rng.IntN(500))
			}
			if err == nil {
				_, err = conn.Exec(ctx, `SELECT pg_log_standby_snapshot()`)
			}
			if err != nil {
				t.Errorf("writing to the primary: %v", err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	defer wg.Wait()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()

	f.advanced["backfill_chunk_size"] = 20
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}
	key := protocol.StateKey([]string{"public", "t"}, 0)
	s := f.connector.Open(t, testsupport.OpenRequest(f.onStandby(standby), bindings, nil), testsupport.SessionOptions{AutoAck: true})
	s.WaitFor(t, 30*time.Second, "the backfill from the standby", func(s *testsupport.Session) bool {
		return streamMode(t, s.State(), key) == "Active"
	})
	close(stop)
	wg.Wait()
	// A last change marks the end: once it is captured, so is everything
	// before it.
	f.exec(t, `INSERT INTO public.t VALUES (0, -1)`)
	s.WaitFor(t, 30*time.Second, "the last change", func(s *testsupport.Session) bool {
		for _, raw := range docsOf(s, 0) {
			if strings.Contains(string(raw), `"v":-1`) {
				return true
			}
		}
		return false
	})
	standby.WaitReplayed(t, f.pg)

	onStandby := &fixture{pg: standby, db: f.db, conn: standby.Connect(t, f.db)}
	docs := docsOf(s, 0)
	if d := diffAgainstTable(t, onStandby, docs, []string{"/id"},
		`SELECT json_build_array(id)::text, json_build_object('id', id, 'v', v)::text FROM public.t`); !d.ok() {
		t.Errorf("the collection differs from the table: %s", d)
	}
	seen := map[string]bool{}
	for _, raw := range docs {
		d := parseDoc(t, raw)
		if d.Meta.Source.Snapshot {
			continue
		}
		change := fmt.Sprint(d.Fields["id"], d.Meta.Source.Loc)
		if seen[change] {
			t.Errorf("change %s emitted twice", raw)
		}
		seen[change] = true
	}
	if len(seen) == 0 {
		t.Errorf("no change was streamed: the writes did not race the backfill")
	}
}

// TestStandbyPrerequisites: on a standby without hot_standby_feedback,
// validation names the setting and how to turn it on; with it on, but a
// primary whose wal_level is replica, the capture's slot creation says
// that the primary's wal_level must be logical.
func TestStandbyPrerequisites(t *testing.T) {
	t.Parallel()
	f, standby := standbyPair(t, testsupport.Options{Settings: map[string]string{"wal_level": "replica"}},
		map[string]string{"wal_level": "logical", "hot_standby_feedback": "off"})
	f.exec(t, `CREATE TABLE public.t (id int PRIMARY KEY)`)
	standby.WaitReplayed(t, f.pg)

	_, stderr, err := f.connector.Call(t, validateRequest(f.onStandby(standby), "public.t"))
	if msg := lastMessage(stderr); err == nil || !strings.Contains(msg, "the server is a standby without hot_standby_feedback") ||
		!strings.Contains(msg, "ALTER SYSTEM SET hot_standby_feedback = on") {
		t.Errorf("validate on a standby without hot_standby_feedback: err %v, last message %q", err, msg)
	}

	standby.Exec(t, "postgres", `ALTER SYSTEM SET hot_standby_feedback = on`)
	standby.Exec(t, "postgres", `SELECT pg_reload_conf()`)
	if _, stderr, err := f.connector.Call(t, validateRequest(f.onStandby(standby), "public.t")); err != nil {
		t.Fatalf("validate with hot_standby_feedback on: %v\n%s", err, stderr)
	}
	bindings := []testsupport.Binding{{Namespace: "public", Stream: "t", Key: []string{"/id"}}}
	s := f.connector.Open(t, testsupport.OpenRequest(f.onStandby(standby), bindings, nil), testsupport.SessionOptions{})
	err = waitExit(t, s, 30*time.Second)
	if msg := lastMessage(s.Stderr()); err == nil || !strings.Contains(msg, "the primary's wal_level is not logical") ||
		!strings.Contains(msg, "ALTER SYSTEM SET wal_level = logical on the primary") {
		t.Errorf("a capture on a standby of a wal_level=replica primary: err %v, last message %q", err, msg)
	}
}
