// Command demo shows the connector capturing a live database: it starts a
// throwaway PostgreSQL (the installed server, or else a build it fetches
// once into the user's cache, as the tests do; see testsupport's
// PostgresVersionEnv), sets it up as the README tells users to, loads
// sample tables, keeps writing to them, and runs `source-postgres capture`,
// whose change documents appear on stdout as they happen. Stop it with
// Ctrl-C; everything it started is removed.
//
//	go run ./demo [-interval 1s] [-duration 0] [-keep]
//
// With -keep it runs no capture itself: it keeps the database up (and
// written to), and prints a configuration file and the capture command
// line to try from another shell.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"pgcapture/testsupport"
)

func main() {
	interval := flag.Duration("interval", time.Second, "time between the demo's writes")
	duration := flag.Duration("duration", 0, "stop after this long (0: run until interrupted)")
	keep := flag.Bool("keep", false, "run no capture: keep the database up for one you start yourself, and print its configuration file and command line")
	flag.Parse()

	if err := runUntilSignalled(*interval, *duration, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// runUntilSignalled runs the demo until it is interrupted or, given a
// duration, for that long.
func runUntilSignalled(interval, duration time.Duration, keep bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	return run(ctx, os.Stdout, os.Stderr, interval, keep)
}

// setup is what a database administrator runs once for a capture.
const setup = `
CREATE USER flow_capture WITH PASSWORD 'secret' REPLICATION;
GRANT pg_read_all_data TO flow_capture;
CREATE TABLE public.flow_watermarks (slot TEXT PRIMARY KEY, watermark TEXT);
GRANT ALL PRIVILEGES ON TABLE public.flow_watermarks TO flow_capture;

CREATE TYPE order_status AS ENUM ('placed', 'paid', 'shipped', 'cancelled');
CREATE TABLE public.customers (
	id         serial PRIMARY KEY,
	name       text NOT NULL,
	email      text,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.orders (
	id          bigserial PRIMARY KEY,
	customer_id integer NOT NULL REFERENCES public.customers,
	total       numeric(12,2) NOT NULL,
	status      order_status NOT NULL DEFAULT 'placed',
	items       jsonb,
	placed_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.customers (name, email) VALUES
	('Ada Lovelace', 'ada@example.com'), ('Alan Turing', 'alan@example.com'),
	('Grace Hopper', NULL), ('Edsger Dijkstra', 'ewd@example.com');
INSERT INTO public.orders (customer_id, total, items)
	SELECT 1 + g % 4, (g * 7.25)::numeric(12,2), jsonb_build_array(jsonb_build_object('sku', 'SKU-' || g, 'qty', g % 3 + 1))
	FROM generate_series(1, 10) g;

CREATE PUBLICATION flow_publication FOR TABLE public.flow_watermarks, public.customers, public.orders
	WITH (publish_via_partition_root = true);
`

// run runs the demo until ctx ends. With keep, it starts no capture but
// prints how to start one (on stdout, the demo's only output then).
func run(ctx context.Context, stdout, stderr io.Writer, interval time.Duration, keep bool) error {
	root, err := testsupport.ModuleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "pgcapture-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	bin := filepath.Join(work, "source-postgres")
	if !keep {
		fmt.Fprintln(stderr, "demo: building the connector")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./source-postgres")
		build.Dir, build.Stdout, build.Stderr = root, stderr, stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building the connector: %w", err)
		}
	}

	fmt.Fprintln(stderr, "demo: starting a throwaway PostgreSQL")
	pg, err := testsupport.Launch(testsupport.Options{})
	if err != nil {
		return err
	}
	defer pg.Destroy()
	conn, err := pgx.Connect(ctx, pg.SuperuserURL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, setup); err != nil {
		return fmt.Errorf("setting up the sample database: %w", err)
	}

	cfg, _ := json.Marshal(map[string]any{
		"address":  pg.Addr(),
		"database": "postgres",
		"user":     "flow_capture",
		"password": "secret",
		"advanced": map[string]any{"sslmode": "disable"},
	})
	cfgPath := filepath.Join(work, "config.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return err
	}
	statePath := filepath.Join(work, "state.json")
	if keep {
		fmt.Fprintf(stdout, "PostgreSQL is up at %s with the tables public.customers and public.orders, written to every %s.\n", pg.Addr(), interval)
		fmt.Fprintf(stdout, "Its configuration file: %s\n", cfgPath)
		fmt.Fprintf(stdout, "Capture it from the repository's root in another shell:\n\n")
		fmt.Fprintf(stdout, "  go build -o bin/source-postgres ./source-postgres\n")
		fmt.Fprintf(stdout, "  bin/source-postgres capture --config %s --state %s\n\n", cfgPath, statePath)
		fmt.Fprintf(stdout, "Ctrl-C here stops the database and deletes it.\n")
		err := writeLoop(ctx, conn, stderr, interval, nil)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintln(stderr, "demo: stopped; the throwaway database is removed")
			return nil
		}
		return err
	}
	fmt.Fprintf(stderr, "demo: capturing with: source-postgres capture --config %s --state %s\n", cfgPath, statePath)
	capture := exec.Command(bin, "capture", "--config", cfgPath, "--state", statePath)
	capture.Stdout, capture.Stderr = stdout, stderr
	capture.Env = append(os.Environ(), "LOG_LEVEL=info")
	if err := capture.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- capture.Wait() }()

	err = writeLoop(ctx, conn, stderr, interval, exited)
	capture.Process.Signal(syscall.SIGTERM)
	// The exit status after the signal (or the kill) tells nothing new.
	select {
	case <-exited: //nolint:errcheck // see above
	case <-time.After(10 * time.Second):
		capture.Process.Kill()
		<-exited //nolint:errcheck // see above
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintln(stderr, "demo: stopped; the throwaway database is removed")
		return nil
	}
	return err
}

// writeLoop makes one random change per interval until ctx ends (or the
// capture exits, when exited is not nil), and says what it changed.
func writeLoop(ctx context.Context, conn *pgx.Conn, stderr io.Writer, interval time.Duration, exited <-chan error) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("the capture exited: %v", err)
		case <-ticker.C:
			did, err := writeOne(ctx, conn)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("writing: %w", err)
			}
			fmt.Fprintf(stderr, "demo: %s\n", did)
		}
	}
}

// change is one kind of write the demo makes: a statement returning the id
// of the row it changed, and how to say what it did to it.
type change struct {
	sql  string
	args func() []any
	says string // a format for the changed row's id
}

var changes = []change{
	{`INSERT INTO public.orders (customer_id, total, items) VALUES ($1, $2, '[{"sku":"SKU-NEW","qty":1}]') RETURNING id`,
		func() []any { return []any{1 + rand.IntN(4), fmt.Sprintf("%d.%02d", rand.IntN(500), rand.IntN(100))} },
		"inserted order %d"},
	{`UPDATE public.orders SET status = 'paid' WHERE id = (SELECT min(id) FROM public.orders WHERE status = 'placed') RETURNING id`,
		nil, "updated order %d: paid"},
	{`UPDATE public.orders SET status = 'shipped' WHERE id = (SELECT min(id) FROM public.orders WHERE status = 'paid') RETURNING id`,
		nil, "updated order %d: shipped"},
	{`DELETE FROM public.orders WHERE id = (SELECT min(id) FROM public.orders WHERE status = 'shipped') RETURNING id`,
		nil, "deleted order %d"},
	// The customer is chosen here rather than by random() in the WHERE
	// clause, which PostgreSQL evaluates once per row: that matches no
	// row, or several, as often as one.
	{`UPDATE public.customers SET email = lower(replace(name, ' ', '.')) || '@example.org' WHERE id = $1 RETURNING id`,
		func() []any { return []any{1 + rand.IntN(4)} }, "updated the email of customer %d"},
}

// writeOne makes a random change. One that finds no row to change (no
// order waiting to be paid, say) gives way to the next kind; an insert
// always succeeds.
func writeOne(ctx context.Context, conn *pgx.Conn) (string, error) {
	first := rand.IntN(len(changes))
	for i := range changes {
		c := changes[(first+i)%len(changes)]
		var args []any
		if c.args != nil {
			args = c.args()
		}
		var id int64
		err := conn.QueryRow(ctx, c.sql, args...).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf(c.says, id), nil
	}
	return "", errors.New("no change found a row to change")
}
