package testsupport

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// queryString runs a single-value query and fails the test on error.
func queryString(t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestStartPostgres(t *testing.T) {
	t.Parallel()
	pg := StartPostgres(t, Options{})

	port := strconv.Itoa(pg.Port())
	if pg.Host() != "127.0.0.1" || pg.Port() <= 0 || pg.Addr() != "127.0.0.1:"+port {
		t.Errorf("Host, Port, Addr = %q, %d, %q", pg.Host(), pg.Port(), pg.Addr())
	}
	if _, err := os.Stat(filepath.Join(pg.SocketDir(), ".s.PGSQL."+port)); err != nil {
		t.Errorf("no Unix socket: %v", err)
	}
	if _, err := os.Stat(filepath.Join(pg.DataDir(), "postgres.log")); err != nil {
		t.Errorf("no server log: %v", err)
	}

	// The superuser URL goes over TCP with a password.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.SuperuserURL("postgres"))
	if err != nil {
		t.Fatalf("connecting with %s: %v", pg.SuperuserURL("postgres"), err)
	}
	defer conn.Close(ctx)
	for setting, want := range map[string]string{
		"wal_level":             "logical",
		"max_replication_slots": "40",
		"max_wal_senders":       "40",
		"fsync":                 "off",
		"server_encoding":       "UTF8",
		"listen_addresses":      "127.0.0.1",
		"port":                  port,
	} {
		if got := queryString(t, conn, "SELECT current_setting($1)", setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}

	// Host connections must check the password.
	wrong := strings.Replace(pg.SuperuserURL("postgres"), ":postgres@", ":wrong@", 1)
	if conn, err := pgx.Connect(ctx, wrong); err == nil {
		conn.Close(ctx)
		t.Errorf("connecting with a wrong password succeeded")
	} else if !strings.Contains(err.Error(), "password authentication failed") {
		t.Errorf("connecting with a wrong password: got %v, want a password authentication failure", err)
	}

	// Debian's server is built with ICU; where it is, its collations work.
	if queryString(t, conn, "SELECT count(*)::text FROM pg_collation WHERE collprovider = 'i'") != "0" {
		if got := queryString(t, conn, `SELECT string_agg(x, '' ORDER BY x COLLATE "en-x-icu") FROM unnest(ARRAY['b', 'A', 'a']) x`); got != "aAb" {
			t.Errorf(`ordering by "en-x-icu" gave %q, want "aAb"`, got)
		}
	}
}

func TestStartPostgresOptions(t *testing.T) {
	t.Parallel()
	pg := StartPostgres(t, Options{
		Settings: map[string]string{"work_mem": "7MB", "cluster_name": `it's \quoted`},
		Files:    map[string][]byte{"extra.txt": []byte("hello")},
		HBA:      []string{"host all rejected 127.0.0.1/32 reject"},
	})
	conn := pg.Connect(t, "postgres")
	if got := queryString(t, conn, "SHOW work_mem"); got != "7MB" {
		t.Errorf("work_mem = %q, want 7MB", got)
	}
	if got := queryString(t, conn, "SHOW cluster_name"); got != `it's \quoted` {
		t.Errorf("cluster_name = %q, want %q", got, `it's \quoted`)
	}

	info, err := os.Stat(filepath.Join(pg.DataDir(), "extra.txt"))
	if err != nil {
		t.Fatalf("Options.Files: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("extra.txt mode = %v, want 0600", info.Mode().Perm())
	}
	dataInfo, err := os.Stat(pg.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	if owner, dataOwner := info.Sys().(*syscall.Stat_t).Uid, dataInfo.Sys().(*syscall.Stat_t).Uid; owner != dataOwner {
		t.Errorf("extra.txt is owned by uid %d, the server by %d", owner, dataOwner)
	}

	// The HBA line comes before the defaults, so it wins over scram-sha-256.
	pg.Exec(t, "postgres", "CREATE ROLE rejected LOGIN PASSWORD 'pw'")
	rejectedURL := strings.Replace(pg.SuperuserURL("postgres"), "postgres:postgres@", "rejected:pw@", 1)
	if conn, err := pgx.Connect(context.Background(), rejectedURL); err == nil {
		conn.Close(context.Background())
		t.Errorf("connecting as a role rejected by Options.HBA succeeded")
	} else if !strings.Contains(err.Error(), "pg_hba.conf rejects connection") {
		t.Errorf("connecting as a role rejected by Options.HBA: got %v, want a pg_hba.conf rejection", err)
	}

	// Restart applies settings that need one, and keeps the port.
	pg.Exec(t, "postgres", "ALTER SYSTEM SET max_connections = 42")
	port := pg.Port()
	pg.Restart(t)
	if pg.Port() != port {
		t.Errorf("port changed from %d to %d across Restart", port, pg.Port())
	}
	conn = pg.Connect(t, "postgres")
	if got := queryString(t, conn, "SHOW max_connections"); got != "42" {
		t.Errorf("after Restart, max_connections = %q, want 42", got)
	}
}

func TestStartPostgresFailureShowsServerLog(t *testing.T) {
	t.Parallel()
	_, err := startCluster(Options{Settings: map[string]string{"shared_buffers": "plenty"}})
	if err == nil {
		t.Fatal("a cluster with an invalid setting started")
	}
	if !strings.Contains(err.Error(), `invalid value for parameter "shared_buffers"`) {
		t.Errorf("error does not include the server log's complaint:\n%v", err)
	}
}

func TestNewDatabaseIsolates(t *testing.T) {
	t.Parallel()
	pg := SharedPostgres(t)
	if SharedPostgres(t) != pg {
		t.Fatal("SharedPostgres returned two servers")
	}

	var first, second string
	t.Run("create", func(t *testing.T) {
		first, second = pg.NewDatabase(t), pg.NewDatabase(t)
		if first == second {
			t.Fatalf("NewDatabase returned %q twice", first)
		}
		pg.Exec(t, first, "CREATE TABLE only_here (id int)")
		conn := pg.Connect(t, second)
		if got := queryString(t, conn, "SELECT count(*)::text FROM pg_tables WHERE tablename = 'only_here'"); got != "0" {
			t.Errorf("a table created in %q is visible in %q", first, second)
		}
		// Leave a session and a replication slot behind: cleanup must cope.
		held := pg.Connect(t, first)
		queryString(t, held, "SELECT slot_name::text FROM pg_create_logical_replication_slot('left_behind', 'pgoutput')")
	})

	conn := pg.Connect(t, "postgres")
	if got := queryString(t, conn, "SELECT count(*)::text FROM pg_database WHERE datname IN ($1, $2)", first, second); got != "0" {
		t.Errorf("%s databases of %q and %q remain after cleanup", got, first, second)
	}
	if got := queryString(t, conn, "SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = 'left_behind'"); got != "0" {
		t.Errorf("the test's replication slot remains after cleanup")
	}
}

func TestDatabaseName(t *testing.T) {
	for _, tc := range []struct{ testName, prefix string }{
		{"TestCapture", "testcapture_"},
		{"TestCapture/Deletes_and-Updates", "testcapture_deletes_and_updates_"},
		{"Test/ünïcode  spaces", "test_n_code_spaces_"},
		{"???", "test_"},
		{strings.Repeat("x", 100), strings.Repeat("x", 40) + "_"},
	} {
		got := databaseName(tc.testName)
		if !strings.HasPrefix(got, tc.prefix) || len(got) != len(tc.prefix)+8 || len(got) > 63 {
			t.Errorf("databaseName(%q) = %q, want %q followed by 8 hex digits", tc.testName, got, tc.prefix)
		}
	}
	if first, second := databaseName("TestX"), databaseName("TestX"); first == second {
		t.Errorf("databaseName is not unique")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string // empty: valid
	}{
		{"empty", Options{}, ""},
		{"valid", Options{
			Settings: map[string]string{"ssl": "on", "pg_stat_statements.max": "100"},
			Files:    map[string][]byte{"server.key": nil},
			HBA:      []string{"hostssl all all 127.0.0.1/32 cert"},
		}, ""},
		{"setting name", Options{Settings: map[string]string{"ssl = on\nfsync": "on"}}, "Options.Settings: invalid setting name"},
		{"empty setting name", Options{Settings: map[string]string{"": "on"}}, "Options.Settings: invalid setting name"},
		{"setting value", Options{Settings: map[string]string{"ssl": "on\nfsync = on"}}, `Options.Settings: the value of "ssl"`},
		{"file in a directory", Options{Files: map[string][]byte{"certs/server.key": nil}}, "Options.Files: \"certs/server.key\" must be a plain file name"},
		{"file outside", Options{Files: map[string][]byte{"..": nil}}, "Options.Files"},
		{"hba line", Options{HBA: []string{"local all all trust\nhost all all 0.0.0.0/0 trust"}}, "Options.HBA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
