package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"pgcapture/sqlcapture"
	"pgcapture/testsupport"
)

// readmeBlock returns the shell block of README.md that follows the
// comment marking it for a test.
func readmeBlock(t *testing.T, root, marker string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	i := strings.Index(readme, "<!-- readme-test: "+marker)
	if i < 0 {
		t.Fatalf("README.md has no block marked %q", marker)
	}
	_, rest, ok := strings.Cut(readme[i:], "```sh\n")
	block, _, closed := strings.Cut(rest, "\n```")
	if !ok || !closed {
		t.Fatalf("no ```sh block follows the marker %q in README.md", marker)
	}
	return block + "\n"
}

// TestReadmeFromAShell runs the commands of the README's "From a shell"
// block as written, in a copy of the repository, against a throwaway
// server set up as "Database setup" says. The one change is the address:
// the server listens where the test could start it, not on localhost:5432.
func TestReadmeFromAShell(t *testing.T) {
	root, err := testsupport.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := readmeBlock(t, root, "from-a-shell")
	pg := testsupport.StartPostgres(t, testsupport.Options{})
	if !strings.Contains(script, `"localhost:5432"`) {
		t.Fatalf("the block no longer configures localhost:5432:\n%s", script)
	}
	script = strings.ReplaceAll(script, `"localhost:5432"`, `"`+pg.Addr()+`"`)

	pg.Exec(t, "postgres", "CREATE DATABASE app")
	pg.Exec(t, "postgres", "CREATE USER flow_capture WITH PASSWORD 'secret' REPLICATION")
	pg.Exec(t, "app", `
		CREATE TABLE public.flow_watermarks (slot TEXT PRIMARY KEY, watermark TEXT);
		GRANT SELECT, INSERT, UPDATE ON TABLE public.flow_watermarks TO flow_capture;
		CREATE TABLE public.users (id int PRIMARY KEY, name text);
		CREATE TABLE public.orders (id int PRIMARY KEY, user_id int, total numeric(10,2));
		CREATE TABLE public.other (id int PRIMARY KEY);
		INSERT INTO public.users VALUES (1, 'Ada'), (2, 'Alan');
		INSERT INTO public.orders VALUES (10, 1, 12.50);
		INSERT INTO public.other VALUES (1);
		-- What README's setup grants before PostgreSQL 14 (pg_read_all_data
		-- is 14's), so that the block runs on every supported major.
		GRANT SELECT ON ALL TABLES IN SCHEMA public TO flow_capture;
		CREATE PUBLICATION flow_publication FOR TABLE public.flow_watermarks, public.users, public.orders, public.other
			WITH (publish_via_partition_root = true);`)

	// A copy of the repository, made of links, so that the commands'
	// files (bin/, config.json, state.json) land outside it.
	work := t.TempDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Name() {
		case ".git", "bin", "config.json", "state.json":
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(work, e.Name())); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command("bash", "-e", "-c", script)
	cmd.Dir = work
	var stdout, stderr testsupport.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second // for a stray process that holds the output pipes
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var exitErr error // set before done is closed
	go func() {
		exitErr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	lines := func() int { return bytes.Count([]byte(stdout.String()), []byte("\n")) }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(120 * time.Second) // the block builds the connector first
		for !cond() {
			select {
			case <-done:
				t.Fatalf("the README's commands exited (%v) before %s\nstdout:\n%s\nstderr:\n%s", exitErr, what, stdout.String(), stderr.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\nstdout:\n%s\nstderr:\n%s", what, stdout.String(), stderr.String())
			}
		}
	}
	waitFor("the backfilled rows", func() bool { return lines() >= 3 })
	pg.Exec(t, "app", "INSERT INTO public.orders VALUES (11, 2, 99.90)")
	waitFor("the inserted order", func() bool { return lines() >= 4 })
	// Ctrl-C, as the README says, stops it.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-done:
		if exitErr != nil {
			t.Errorf("the capture exited with %v after Ctrl-C\nstderr:\n%s", exitErr, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the capture did not stop within 15s of Ctrl-C\nstderr:\n%s", stderr.String())
	}

	var tables []string
	for line := range strings.Lines(stdout.String()) {
		tables = append(tables, parseDoc(t, []byte(strings.TrimSpace(line))).Meta.Source.Table)
	}
	if strings.Join(tables, ",") != "users,users,orders,orders" && strings.Join(tables, ",") != "orders,users,users,orders" {
		t.Errorf("the documents are of tables %v, want the rows of users and orders (not other), then the insert", tables)
	}
	st := readStateFile(t, filepath.Join(work, "state.json")).state
	if len(st.Streams) != 2 || st.Cursor == "" {
		t.Errorf("state.json holds %+v, want the cursor and the two tables", st)
	}
	for key, s := range st.Streams {
		if s.Mode != sqlcapture.ModeActive {
			t.Errorf("state.json: table %s is %s, want Active", key, s.Mode)
		}
	}
	if _, err := os.Stat(filepath.Join(work, "bin", "source-postgres")); err != nil {
		t.Errorf("the build did not write bin/source-postgres: %v", err)
	}
}
