// Command demo shows the connector capturing a live database: it starts a
// throwaway PostgreSQL (the installed server, or else a build it fetches
// once into the user's cache, as the tests do; see testsupport's
// PostgresVersionEnv), sets it up as the README tells users to, loads
// sample tables, keeps writing to them, and runs `source-postgres capture`,
// whose change documents appear on stdout as they happen. Stop it with
// Ctrl-C; everything it started is removed.
//
//	go run ./demo [-interval 1s] [-duration 0]
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
	flag.Parse()

	if err := runUntilSignalled(*interval, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// runUntilSignalled runs the demo until it is interrupted or, given a
// duration, for that long.
func runUntilSignalled(interval, duration time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	return run(ctx, os.Stdout, os.Stderr, interval)
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

func run(ctx context.Context, stdout, stderr io.Writer, interval time.Duration) error {
	root, err := testsupport.ModuleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "pgcapture-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	fmt.Fprintln(stderr, "demo: building the connector")
	bin := filepath.Join(work, "source-postgres")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./source-postgres")
	build.Dir, build.Stdout, build.Stderr = root, stderr, stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the connector: %w", err)
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
	fmt.Fprintf(stderr, "demo: capturing with: source-postgres capture --config %s --state %s\n", cfgPath, filepath.Join(work, "state.json"))
	capture := exec.Command(bin, "capture", "--config", cfgPath, "--state", filepath.Join(work, "state.json"))
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

// writeLoop makes one random change per interval until ctx ends.
func writeLoop(ctx context.Context, conn *pgx.Conn, stderr io.Writer, interval time.Duration, exited <-chan error) error {
	statements := []string{
		`INSERT INTO public.orders (customer_id, total, items) VALUES (1 + floor(random() * 4)::int, round((random() * 500)::numeric, 2), '[{"sku":"SKU-NEW","qty":1}]')`,
		`UPDATE public.orders SET status = 'paid' WHERE id = (SELECT min(id) FROM public.orders WHERE status = 'placed')`,
		`UPDATE public.orders SET status = 'shipped' WHERE id = (SELECT min(id) FROM public.orders WHERE status = 'paid')`,
		`DELETE FROM public.orders WHERE id = (SELECT min(id) FROM public.orders WHERE status = 'shipped')`,
		`UPDATE public.customers SET email = lower(replace(name, ' ', '.')) || '@example.org' WHERE id = 1 + floor(random() * 4)::int`,
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("the capture exited: %v", err)
		case <-ticker.C:
			stmt := statements[rand.IntN(len(statements))]
			tag, err := conn.Exec(ctx, stmt)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("writing: %w", err)
			}
			fmt.Fprintf(stderr, "demo: %s\n", tag.String())
		}
	}
}
