package postgres

import (
	"fmt"
	"hash/fnv"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"pgcapture/testsupport"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testsupport.StopShared()
	os.Exit(code)
}

// fixture is one test's database on the shared cluster, with a replication
// slot name of its own.
type fixture struct {
	pg       *testsupport.Postgres
	db       string
	conn     *pgx.Conn // as the superuser
	slot     string
	advanced map[string]any
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	pg := testsupport.SharedPostgres(t)
	db := pg.NewDatabase(t)
	h := fnv.New64a()
	h.Write([]byte(db))
	return &fixture{
		pg:       pg,
		db:       db,
		conn:     pg.Connect(t, db),
		slot:     fmt.Sprintf("test_%x", h.Sum64()),
		advanced: map[string]any{},
	}
}

func (f *fixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	f.pg.Exec(t, f.db, sql, args...)
}

// config is the endpoint configuration of the superuser.
func (f *fixture) config() map[string]any {
	advanced := map[string]any{"slotName": f.slot, "sslmode": "disable"}
	for k, v := range f.advanced {
		advanced[k] = v
	}
	return map[string]any{
		"address":  f.pg.Addr(),
		"database": f.db,
		"user":     "postgres",
		"password": "postgres",
		"advanced": advanced,
	}
}
