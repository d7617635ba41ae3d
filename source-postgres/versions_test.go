package main

import (
	"os"
	"strings"
	"testing"

	"pgcapture/source-postgres/pgversion"
	"pgcapture/testsupport"
)

// server returns the version of the fixture's server, for the tests that
// adapt to what its major has (see package pgversion).
func (f *fixture) server(t *testing.T) pgversion.Server {
	t.Helper()
	s, err := pgversion.Read(t.Context(), f.conn)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestServerVersion names the server the tests run against, and checks that
// it is the release PGCAPTURE_POSTGRES_VERSION asked for, so that a version
// matrix (.ci/versions) cannot pass on the wrong server.
func TestServerVersion(t *testing.T) {
	f := newFixture(t)
	s := f.server(t)
	t.Logf("server under test: PostgreSQL %s", s.Version)
	want := os.Getenv(testsupport.PostgresVersionEnv)
	if want == "" {
		return
	}
	if got := strings.Fields(s.Version)[0]; got != want && !strings.HasPrefix(got, want+".") {
		t.Errorf("%s=%s, but the server is PostgreSQL %s", testsupport.PostgresVersionEnv, want, s.Version)
	}
	if why := s.Unsupported(); why != "" {
		t.Error(why)
	}
}
