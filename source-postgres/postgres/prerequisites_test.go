package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/discovery"
	"pgcapture/sqlcapture"
)

// prereqFixture is a test database, without a publication, and a role of
// its own that has no attribute and no privilege beyond PUBLIC's.
type prereqFixture struct {
	*fixture
	role string
	log  bytes.Buffer // what the connector logged while connected as role
}

func newPrereqFixture(t *testing.T) *prereqFixture {
	t.Helper()
	f := newFixture(t)
	p := &prereqFixture{fixture: f, role: f.slot + "_user"}
	f.exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD 'secret'", p.role))
	// Before 15, every role may create tables in schema public; the tests
	// start from 15's default, where only its owner may.
	f.exec(t, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
	t.Cleanup(func() {
		f.pg.Exec(t, f.db, "DROP OWNED BY "+p.role)
		f.pg.Exec(t, "postgres", "DROP ROLE "+p.role)
	})
	return p
}

// connect connects as the role, with the tables listed as the capture's.
func (p *prereqFixture) connect(t *testing.T) (*Database, []*discovery.Table) {
	t.Helper()
	cfg := p.config()
	cfg["user"], cfg["password"] = p.role, "secret"
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(&p.log)
	db, err := Connect(t.Context(), parsed, log)
	if err != nil {
		t.Fatalf("connecting as %s: %v", p.role, err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	var tables []*discovery.Table
	for _, name := range []string{"t", "u"} {
		if tbl := db.tables[sqlcapture.StreamID{Schema: "public", Table: name}]; tbl != nil {
			tables = append(tables, tbl)
		}
	}
	return db, tables
}

// check runs the validate-time check as the role and returns its error,
// failing the test if the error does not mention every one of want.
func (p *prereqFixture) check(t *testing.T, want ...string) error {
	t.Helper()
	db, tables := p.connect(t)
	err := db.checkPrerequisites(t.Context(), tables)
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("the check failed: %v", err)
		}
		return nil
	}
	if err == nil {
		t.Fatalf("the check passed; want an error mentioning %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error does not mention %q:\n%v", w, err)
		}
	}
	return err
}

func (p *prereqFixture) count(t *testing.T, query string) int {
	t.Helper()
	var n int
	if err := p.conn.QueryRow(t.Context(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

const (
	wmSQL         = `CREATE TABLE IF NOT EXISTS "public"."flow_watermarks" (slot TEXT PRIMARY KEY, watermark TEXT)`
	publishedRows = `SELECT count(*) FROM pg_publication_tables WHERE pubname = 'flow_publication'`
)

func TestPrerequisitesReplicationAttribute(t *testing.T) {
	p := newPrereqFixture(t)
	p.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY)")
	p.exec(t, "GRANT SELECT ON public.t TO "+p.role)
	fix := fmt.Sprintf(`ALTER USER "%s" WITH REPLICATION`, p.role)
	p.check(t, fmt.Sprintf(`user %q lacks the REPLICATION attribute`, p.role), fix) //nolint:errcheck // check asserts on the error itself
	db, _ := p.connect(t)
	if err := db.checkServer(t.Context()); err == nil || !strings.Contains(err.Error(), fix) {
		t.Errorf("checkServer: got %v, want the REPLICATION problem", err)
	}

	p.exec(t, fix)
	if err := db.checkServer(t.Context()); err != nil {
		t.Errorf("checkServer after %s: %v", fix, err)
	}
	// The REPLICATION problem is gone; the publication, which the user may
	// not create, remains.
	err := p.check(t, "publication")
	if strings.Contains(err.Error(), "REPLICATION") {
		t.Errorf("the REPLICATION problem is still reported after %s: %v", fix, err)
	}
}

// A user that owns its tables and may create in the database and schema
// needs nothing: validate says what open will do, and does nothing; open
// does it.
func TestPrerequisitesOpenPreparesTheDatabase(t *testing.T) {
	p := newPrereqFixture(t)
	p.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY)")
	p.exec(t, "CREATE TABLE public.u (id int PRIMARY KEY) PARTITION BY RANGE (id)")
	p.exec(t, "CREATE TABLE public.u_1 PARTITION OF public.u FOR VALUES FROM (0) TO (10)")
	for _, sql := range []string{
		"ALTER TABLE public.t OWNER TO %s",
		"ALTER TABLE public.u OWNER TO %s",
		"ALTER TABLE public.u_1 OWNER TO %s",
		"GRANT CREATE ON DATABASE " + p.db + " TO %s",
		"GRANT CREATE ON SCHEMA public TO %s",
	} {
		p.exec(t, fmt.Sprintf(sql, p.role))
	}
	wantChanges := []string{
		wmSQL,
		`CREATE PUBLICATION "flow_publication" FOR TABLE "public"."flow_watermarks", "public"."t", "public"."u" WITH (publish_via_partition_root = true)`,
	}

	// While another problem remains, open changes nothing, and says what
	// it will do once the problem is fixed.
	db, tables := p.connect(t)
	err := db.ensurePrerequisites(t.Context(), tables)
	if err == nil || problemCount(err) != 1 || !strings.Contains(err.Error(), "REPLICATION") ||
		!strings.Contains(err.Error(), "once the above is fixed, the capture runs these statements itself when it starts: "+strings.Join(wantChanges, "; ")) {
		t.Errorf("open without REPLICATION: got %v, want that problem and the changes to come", err)
	}
	p.exec(t, "ALTER USER "+p.role+" WITH REPLICATION")

	p.check(t) //nolint:errcheck // check asserts on the error itself
	for _, sql := range wantChanges {
		if !strings.Contains(p.log.String(), strings.ReplaceAll(sql, `"`, `\"`)) {
			t.Errorf("validate did not say that open will run %s; it logged:\n%s", sql, p.log.String())
		}
	}
	if n := p.count(t, "SELECT count(*) FROM pg_publication") + p.count(t, "SELECT count(*) FROM pg_class WHERE relname = 'flow_watermarks'"); n != 0 {
		t.Fatalf("validate changed the database: %d publications and watermarks tables exist", n)
	}

	db, tables = p.connect(t)
	if err := db.ensurePrerequisites(t.Context(), tables); err != nil {
		t.Fatalf("open: %v", err)
	}
	if n := p.count(t, publishedRows); n != 3 {
		t.Errorf("the publication has %d tables, want the watermarks table, t and u", n)
	}
	if n := p.count(t, "SELECT count(*) FROM pg_publication WHERE pubviaroot"); n != 1 {
		t.Errorf("the publication does not publish via the partition root")
	}
	p.log.Reset()
	p.check(t) //nolint:errcheck // check asserts on the error itself
	if strings.Contains(p.log.String(), "will run") {
		t.Errorf("after open, validate still plans changes:\n%s", p.log.String())
	}

	// A table that is not published yet is added at open.
	p.exec(t, "CREATE TABLE public.v (id int PRIMARY KEY)")
	p.exec(t, "ALTER TABLE public.v OWNER TO "+p.role)
	db, _ = p.connect(t)
	v := db.tables[sqlcapture.StreamID{Schema: "public", Table: "v"}]
	if err := db.checkPrerequisites(t.Context(), append(tables, v)); err != nil {
		t.Fatalf("validate with a new table: %v", err)
	}
	if !strings.Contains(p.log.String(), `ALTER PUBLICATION \"flow_publication\" ADD TABLE \"public\".\"v\"`) {
		t.Errorf("validate did not say that open will add the new table; it logged:\n%s", p.log.String())
	}
	if err := db.ensurePrerequisites(t.Context(), append(tables, v)); err != nil {
		t.Fatalf("open with a new table: %v", err)
	}
	if n := p.count(t, publishedRows+" AND tablename = 'v'"); n != 1 {
		t.Errorf("open did not add the new table to the publication")
	}
}

// Each problem the user cannot fix is reported with the exact statements
// that fix it, which the test then runs as a superuser.
func TestPrerequisitesGiveTheFix(t *testing.T) {
	// Each case starts with a user that may replicate, and a table.
	base := func(p *prereqFixture) {
		p.exec(t, fmt.Sprintf("ALTER USER %s WITH REPLICATION", p.role))
		p.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY)")
	}
	for _, tc := range []struct {
		name  string
		setup func(p *prereqFixture)
		// want are what the error must say, with %[1]s standing for the role.
		want []string
		// problems is how many problems the error lists.
		problems int
		// fix is run as a superuser, with %[1]s standing for the role.
		fix string
	}{{
		name:  "table not readable",
		setup: func(p *prereqFixture) { p.exec(t, "CREATE PUBLICATION flow_publication FOR ALL TABLES") },
		want: []string{
			`user "%[1]s" cannot read table(s) "public"."t"`,
			`GRANT SELECT ON TABLE "public"."t" TO "%[1]s"`,
			`the watermarks table "public"."flow_watermarks" does not exist, and user "%[1]s" may not create it`,
		},
		problems: 2,
		fix:      `GRANT SELECT ON TABLE "public"."t" TO "%[1]s"; ` + wmSQL + `; GRANT SELECT, INSERT, UPDATE ON TABLE "public"."flow_watermarks" TO "%[1]s"`,
	}, {
		name: "watermarks table not writable",
		setup: func(p *prereqFixture) {
			p.exec(t, "CREATE PUBLICATION flow_publication FOR ALL TABLES")
			p.exec(t, wmSQL)
			p.exec(t, fmt.Sprintf("GRANT SELECT ON public.t TO %[1]s; GRANT INSERT, UPDATE ON public.flow_watermarks TO %[1]s", p.role))
		},
		want: []string{
			`user "%[1]s" cannot write to the watermarks table "public"."flow_watermarks"`,
			`GRANT SELECT, INSERT, UPDATE ON TABLE "public"."flow_watermarks" TO "%[1]s"`,
		},
		problems: 1,
		fix:      `GRANT SELECT, INSERT, UPDATE ON TABLE "public"."flow_watermarks" TO "%[1]s"`,
	}, {
		name: "publication missing",
		setup: func(p *prereqFixture) {
			p.exec(t, wmSQL)
			p.exec(t, fmt.Sprintf("GRANT SELECT ON public.t TO %[1]s; GRANT SELECT, INSERT, UPDATE ON public.flow_watermarks TO %[1]s", p.role))
		},
		want: []string{
			`publication "flow_publication" does not exist, and user "%[1]s" may not create it (it lacks the CREATE privilege on database`,
			`it does not own "public"."t", "public"."flow_watermarks"`,
		},
		problems: 1,
		fix:      `CREATE PUBLICATION "flow_publication" FOR TABLE "public"."flow_watermarks", "public"."t" WITH (publish_via_partition_root = true)`,
	}, {
		name: "table not in the publication",
		setup: func(p *prereqFixture) {
			p.exec(t, wmSQL)
			p.exec(t, fmt.Sprintf("GRANT SELECT ON public.t TO %[1]s; GRANT SELECT, INSERT, UPDATE ON public.flow_watermarks TO %[1]s", p.role))
			p.exec(t, "CREATE PUBLICATION flow_publication FOR TABLE public.flow_watermarks")
			p.exec(t, "ALTER PUBLICATION flow_publication OWNER TO "+p.role)
		},
		want: []string{
			`table(s) "public"."t" are not in publication "flow_publication", and user "%[1]s" may not add them (it does not own "public"."t")`,
		},
		problems: 1,
		fix:      `ALTER PUBLICATION "flow_publication" ADD TABLE "public"."t"`,
	}, {
		name: "publication without deletes",
		setup: func(p *prereqFixture) {
			p.exec(t, wmSQL)
			p.exec(t, fmt.Sprintf("GRANT SELECT ON public.t TO %[1]s; GRANT SELECT, INSERT, UPDATE ON public.flow_watermarks TO %[1]s", p.role))
			p.exec(t, "CREATE PUBLICATION flow_publication FOR ALL TABLES WITH (publish = 'insert, update')")
		},
		want:     []string{`publication "flow_publication" does not publish all of inserts, updates and deletes`},
		problems: 1,
		fix:      `ALTER PUBLICATION "flow_publication" SET (publish = 'insert, update, delete, truncate')`,
	}, {
		name: "schema of the watermarks table missing",
		setup: func(p *prereqFixture) {
			p.advanced["watermarksTable"] = "capture.watermarks"
			p.exec(t, "CREATE PUBLICATION flow_publication FOR ALL TABLES")
			p.exec(t, "GRANT SELECT ON public.t TO "+p.role)
		},
		want:     []string{`the schema "capture" of the watermarks table does not exist`, `CREATE SCHEMA "capture"`},
		problems: 1,
		fix:      `CREATE SCHEMA "capture"; GRANT USAGE, CREATE ON SCHEMA capture TO "%[1]s"`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPrereqFixture(t)
			base(p)
			tc.setup(p)
			var want []string
			for _, w := range tc.want {
				want = append(want, strings.ReplaceAll(w, "%[1]s", p.role))
			}
			err := p.check(t, want...)
			if n := problemCount(err); n != tc.problems {
				t.Errorf("want %d problems, got %d:\n%v", tc.problems, n, err)
			}
			p.exec(t, strings.ReplaceAll(tc.fix, "%[1]s", p.role))
			db, tables := p.connect(t)
			if err := db.ensurePrerequisites(t.Context(), tables); err != nil {
				t.Errorf("after running the fix as a superuser, open still fails: %v", err)
			}
		})
	}
}

// problemCount counts the problems a prerequisites error lists.
func problemCount(err error) int {
	return strings.Count(err.Error(), "\n - ") - strings.Count(err.Error(), "\n - once the above is fixed")
}

// Every problem is listed at once, each with its fix, so that one round of
// fixes is enough.
func TestPrerequisitesSeveralAtOnce(t *testing.T) {
	p := newPrereqFixture(t)
	p.exec(t, "CREATE TABLE public.t (id int PRIMARY KEY)")
	p.exec(t, wmSQL)
	p.exec(t, fmt.Sprintf("GRANT INSERT ON public.flow_watermarks TO %s", p.role))
	other := p.pg.NewDatabase(t)
	p.pg.Exec(t, other, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", p.slot)

	want := []string{
		fmt.Sprintf(`user %q lacks the REPLICATION attribute`, p.role),
		fmt.Sprintf(`replication slot %q belongs to database %q, not %q`, p.slot, other, p.db),
		fmt.Sprintf(`user %q cannot read table(s) "public"."t"`, p.role),
		fmt.Sprintf(`user %q cannot write to the watermarks table "public"."flow_watermarks"`, p.role),
		fmt.Sprintf(`publication "flow_publication" does not exist, and user %q may not create it`, p.role),
	}
	err := p.check(t, want...)
	if n := problemCount(err); n != len(want) {
		t.Errorf("want %d problems, got %d:\n%v", len(want), n, err)
	}
	db, tables := p.connect(t)
	if err := db.ensurePrerequisites(t.Context(), tables); err == nil || err.Error() != p.check(t, want...).Error() {
		t.Errorf("open reported other problems than validate:\n%v", err)
	}

	for _, fix := range []string{
		fmt.Sprintf(`ALTER USER "%s" WITH REPLICATION`, p.role),
		fmt.Sprintf(`GRANT SELECT ON TABLE "public"."t" TO "%s"`, p.role),
		fmt.Sprintf(`GRANT SELECT, INSERT, UPDATE ON TABLE "public"."flow_watermarks" TO "%s"`, p.role),
		`CREATE PUBLICATION "flow_publication" FOR TABLE "public"."flow_watermarks", "public"."t" WITH (publish_via_partition_root = true)`,
	} {
		if !strings.Contains(err.Error(), fix) {
			t.Errorf("the error does not give the fix %s", fix)
		}
		p.exec(t, fix)
	}
	p.pg.Exec(t, other, "SELECT pg_drop_replication_slot($1)", p.slot)
	if err := db.ensurePrerequisites(t.Context(), tables); err != nil {
		t.Errorf("after every fix, open still fails: %v", err)
	}
}

func TestPrerequisitesSlotOfAnotherPlugin(t *testing.T) {
	p := newPrereqFixture(t)
	p.exec(t, "SELECT pg_create_logical_replication_slot($1, 'test_decoding')", p.slot)
	db, _ := p.connect(t)
	err := db.checkServer(t.Context())
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf(`replication slot %q uses the "test_decoding" plugin, not pgoutput`, p.slot)) ||
		!strings.Contains(err.Error(), fmt.Sprintf(`SELECT pg_drop_replication_slot('%s')`, p.slot)) {
		t.Errorf("got %v, want the slot's plugin named with how to drop the slot", err)
	}
}
