package postgres

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/pgversion"
	"pgcapture/sqlcapture"
)

// TestPrerequisitesPublicationFiltersFitTheIdentity checks that a row
// filter or column list that makes PostgreSQL refuse UPDATE and DELETE on
// a captured table is reported with
// the table, the publication, the columns and a fix; and that the check
// agrees with the server: each case also runs an UPDATE, which the server
// refuses exactly when the check reports the identity, and accepts once
// the suggested fix is run.
func TestPrerequisitesPublicationFiltersFitTheIdentity(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup runs after public.t (id int PRIMARY KEY, region text NOT
		// NULL, amount int, u int NOT NULL UNIQUE) is created.
		setup string
		// want are what the error must say; none: the check passes.
		want []string
		// notWant must not be in the error.
		notWant []string
		// refused: the server refuses UPDATE before the fix.
		refused bool
		fix     string
	}{{
		name:    "filter outside the primary key",
		setup:   `CREATE PUBLICATION flow_publication FOR TABLE public.t WHERE (region = 'eu')`,
		want:    []string{`publication "flow_publication" filters table "public"."t" by WHERE ((region = 'eu'::text))`, `column "region" outside the table's replica identity (DEFAULT`, `ALTER TABLE "public"."t" REPLICA IDENTITY FULL`, `REPLICA IDENTITY USING INDEX`},
		refused: true,
		fix:     `ALTER TABLE public.t REPLICA IDENTITY FULL`,
	}, {
		name:    "filter under REPLICA IDENTITY NOTHING",
		setup:   `ALTER TABLE public.t REPLICA IDENTITY NOTHING; CREATE PUBLICATION flow_publication FOR TABLE public.t WHERE (id > 0 AND amount > 0)`,
		want:    []string{`columns "id", "amount" outside the table's replica identity (NOTHING)`},
		refused: true,
		fix:     `ALTER TABLE public.t REPLICA IDENTITY FULL`,
	}, {
		name:    "filter and column list: FULL is no way out",
		setup:   `CREATE PUBLICATION flow_publication FOR TABLE public.t (id, region, amount) WHERE (region <> 'x')`,
		want:    []string{`column "region" outside`, `ALTER PUBLICATION "flow_publication" DROP TABLE "public"."t"; ALTER PUBLICATION "flow_publication" ADD TABLE "public"."t" ("id", "region", "amount") WHERE (...)`},
		notWant: []string{`REPLICA IDENTITY FULL`},
		refused: true,
		fix:     `CREATE UNIQUE INDEX t_identity ON public.t (id, region); ALTER TABLE public.t REPLICA IDENTITY USING INDEX t_identity`,
	}, {
		name:    "column list without the primary key",
		setup:   `CREATE PUBLICATION flow_publication FOR TABLE public.t (region, amount) WHERE (id > 0)`,
		want:    []string{`column list that leaves out its replica identity column "id"`, `ADD TABLE "public"."t" ("id", "region", "amount") WHERE ((id > 0))`},
		notWant: []string{`collection key`, `outside the table's replica identity`},
		refused: true,
		fix:     `ALTER PUBLICATION flow_publication DROP TABLE public.t; ALTER PUBLICATION flow_publication ADD TABLE public.t (id, region, amount) WHERE (id > 0)`,
	}, {
		name:    "column list under REPLICA IDENTITY FULL",
		setup:   `ALTER TABLE public.t REPLICA IDENTITY FULL; CREATE PUBLICATION flow_publication FOR TABLE public.t (id, region, amount, u)`,
		want:    []string{`table "public"."t" has REPLICA IDENTITY FULL and publication "flow_publication" publishes it with a column list`, `REPLICA IDENTITY DEFAULT`},
		refused: true,
		fix:     `ALTER TABLE public.t REPLICA IDENTITY DEFAULT`,
	}, {
		// Discovery keys the table by the published unique column u.
		name:  "column list without the primary key, but with the identity",
		setup: `ALTER TABLE public.t REPLICA IDENTITY USING INDEX t_u_key; CREATE PUBLICATION flow_publication FOR TABLE public.t (u, region) WHERE (u > 0)`,
	}, {
		name:  "filter on the primary key",
		setup: `CREATE PUBLICATION flow_publication FOR TABLE public.t (id, region) WHERE (id % 2 = 0)`,
	}, {
		name:  "filter under REPLICA IDENTITY FULL",
		setup: `ALTER TABLE public.t REPLICA IDENTITY FULL; CREATE PUBLICATION flow_publication FOR TABLE public.t WHERE (region = 'eu' AND amount > 1)`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if s, err := pgversion.Read(t.Context(), f.conn); err != nil {
				t.Fatal(err)
			} else if !s.Has(pgversion.PublicationRowFilters) {
				t.Skipf("PostgreSQL %s has no publication row filters or column lists (new in 15)", s.Version)
			}
			f.exec(t, `CREATE TABLE public.t (id int PRIMARY KEY, region text NOT NULL, amount int, u int NOT NULL UNIQUE)`)
			f.exec(t, `INSERT INTO public.t VALUES (1, 'eu', 10, 1)`)
			f.exec(t, tc.setup)

			err := f.checkAsSuperuser(t)
			switch {
			case len(tc.want) == 0 && err != nil:
				t.Fatalf("the check failed: %v", err)
			case len(tc.want) > 0 && err == nil:
				t.Fatalf("the check passed; want an error mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not mention %q:\n%v", w, err)
				}
			}
			for _, w := range tc.notWant {
				if err != nil && strings.Contains(err.Error(), w) {
					t.Errorf("the error mentions %q:\n%v", w, err)
				}
			}
			_, updErr := f.conn.Exec(t.Context(), `UPDATE public.t SET amount = amount + 1`)
			if refused := updErr != nil; refused != tc.refused {
				t.Fatalf("the server refused UPDATE: %v (error %v), want %v", refused, updErr, tc.refused)
			}
			if tc.fix == "" {
				return
			}
			f.exec(t, tc.fix)
			if err := f.checkAsSuperuser(t); err != nil {
				t.Errorf("after the fix, the check still fails: %v", err)
			}
			if _, err := f.conn.Exec(t.Context(), `UPDATE public.t SET amount = amount + 1`); err != nil {
				t.Errorf("after the fix, the server refuses UPDATE: %v", err)
			}
		})
	}
}

// checkAsSuperuser connects as the superuser and runs the validate-time
// check for the capture of public.t.
func (f *fixture) checkAsSuperuser(t *testing.T) error {
	t.Helper()
	raw, err := json.Marshal(f.config())
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	db, err := Connect(t.Context(), parsed, log)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer db.Close(context.Background())
	table := db.tables[sqlcapture.StreamID{Schema: "public", Table: "t"}]
	if table == nil {
		t.Fatal("public.t was not discovered")
	}
	return db.checkPrerequisites(t.Context(), []*discovery.Table{table})
}
