package postgres

import (
	"slices"
	"strings"
	"testing"

	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/discovery"
)

// TestCaptureProblemsRules checks the rules of captureProblems on facts
// that are awkward to set up on a real server (the real cases are in
// prerequisites_test.go): who may create or alter the publication, and the
// order of the statements an administrator is told to run.
func TestCaptureProblemsRules(t *testing.T) {
	cfg, err := config.Parse([]byte(`{"address": "db:5432", "user": "capture", "database": "shop"}`))
	if err != nil {
		t.Fatal(err)
	}
	db := &Database{cfg: cfg}
	tables := []*discovery.Table{{Schema: "public", Name: "t"}}
	const (
		createWM    = `CREATE TABLE IF NOT EXISTS "public"."flow_watermarks" (slot TEXT PRIMARY KEY, watermark TEXT)`
		grantWM     = `GRANT SELECT, INSERT, UPDATE ON TABLE "public"."flow_watermarks" TO "capture"`
		createPub   = `CREATE PUBLICATION "flow_publication" FOR TABLE "public"."flow_watermarks", "public"."t" WITH (publish_via_partition_root = true)`
		asAdmin     = "run as a superuser or the owner of the tables: "
		owned       = "owned"
		notOwned    = "not owned"
		published   = "published"
		unpublished = "unpublished"
	)
	// table describes a readable table: owned or not, published or not.
	table := func(ownership, publication string) relationFacts {
		return relationFacts{exists: true, usage: true, selectable: true, writable: true,
			owned: ownership == owned, published: publication == published}
	}
	type publication = struct{ exists, allTables, allActions, owned bool }
	for _, tc := range []struct {
		name        string
		facts       captureFacts
		wantChanges []string
		// wantProblems are the problems as "what; fix".
		wantProblems []string
	}{{
		name: "everything in place",
		facts: captureFacts{
			publication: publication{exists: true, allActions: true, owned: true},
			watermarks:  table(owned, published),
			tables:      []relationFacts{table(notOwned, published)},
		},
	}, {
		name: "the user creates the watermarks table and the publication",
		facts: captureFacts{
			createInDatabase: true,
			watermarksSchema: struct{ exists, create bool }{true, true},
			tables:           []relationFacts{table(owned, unpublished)},
		},
		wantChanges: []string{createWM, createPub},
	}, {
		name: "an administrator creates both, the watermarks table first",
		facts: captureFacts{
			watermarksSchema: struct{ exists, create bool }{true, false},
			tables:           []relationFacts{table(notOwned, unpublished)},
		},
		wantProblems: []string{
			`the watermarks table "public"."flow_watermarks" does not exist, and user "capture" may not create it in schema "public"; run ` + createWM + "; " + grantWM,
			`publication "flow_publication" does not exist, and user "capture" may not create it (it lacks the CREATE privilege on database "shop"; it does not own "public"."t", "public"."flow_watermarks"); ` +
				asAdmin + createWM + "; " + grantWM + "; " + createPub,
		},
	}, {
		name: "the publication's owner adds the table",
		facts: captureFacts{
			publication: publication{exists: true, allActions: true, owned: false},
			watermarks:  table(owned, published),
			tables:      []relationFacts{table(owned, unpublished)},
		},
		wantProblems: []string{
			`table(s) "public"."t" are not in publication "flow_publication", and user "capture" may not add them (only the publication's owner may add tables to it); ` +
				asAdmin + `ALTER PUBLICATION "flow_publication" ADD TABLE "public"."t"`,
		},
	}, {
		name: "the user adds the tables it owns to its publication, the watermarks table first",
		facts: captureFacts{
			publication: publication{exists: true, allActions: true, owned: true},
			watermarks:  table(owned, unpublished),
			tables:      []relationFacts{table(owned, unpublished)},
		},
		wantChanges: []string{`ALTER PUBLICATION "flow_publication" ADD TABLE "public"."flow_watermarks", "public"."t"`},
	}, {
		name: "only unpublished tables the user does not own are named",
		facts: captureFacts{
			publication: publication{exists: true, allActions: true, owned: true},
			watermarks:  table(notOwned, unpublished),
			tables:      []relationFacts{table(notOwned, published)},
		},
		wantProblems: []string{
			`table(s) "public"."flow_watermarks" are not in publication "flow_publication", and user "capture" may not add them (it does not own "public"."flow_watermarks"); ` +
				asAdmin + `ALTER PUBLICATION "flow_publication" ADD TABLE "public"."flow_watermarks"`,
		},
	}, {
		name: "a FOR ALL TABLES publication publishes the watermarks table",
		facts: captureFacts{
			publication: publication{exists: true, allTables: true, allActions: true},
			watermarks:  table(notOwned, unpublished),
			tables:      []relationFacts{table(notOwned, published)},
		},
	}, {
		name: "a dropped table is left for the capture to report",
		facts: captureFacts{
			publication: publication{exists: true, allActions: true},
			watermarks:  table(owned, published),
			tables:      []relationFacts{{}},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p := &prerequisites{}
			db.captureProblems(p, &tc.facts, tables)
			var problems []string
			for _, pr := range p.problems {
				problems = append(problems, pr.what+"; "+pr.fix)
			}
			if !slices.Equal(problems, tc.wantProblems) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(tc.wantProblems, "\n"))
			}
			if !slices.Equal(p.changes, tc.wantChanges) {
				t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(p.changes, "\n"), strings.Join(tc.wantChanges, "\n"))
			}
		})
	}
}
