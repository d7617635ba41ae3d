package testsupport

import (
	"testing"
)

// TestStartStandby proves the copied standby streams from its primary, is
// read-only until promoted, and writable after.
func TestStartStandby(t *testing.T) {
	t.Parallel()
	primary := StartPostgres(t, Options{})
	primary.Exec(t, "postgres", "CREATE TABLE before_copy (id int); INSERT INTO before_copy VALUES (1)")
	standby := primary.StartStandby(t, StandbyOptions{Settings: map[string]string{"hot_standby_feedback": "on"}})

	primary.Exec(t, "postgres", "CREATE TABLE after_copy (id int); INSERT INTO after_copy VALUES (2)")
	standby.WaitReplayed(t, primary)
	conn := standby.Connect(t, "postgres")
	if got := queryString(t, conn, "SELECT pg_is_in_recovery()::text"); got != "true" {
		t.Errorf("pg_is_in_recovery() = %s on the standby", got)
	}
	if got := queryString(t, conn, "SELECT ((SELECT sum(id) FROM before_copy) + (SELECT sum(id) FROM after_copy))::text"); got != "3" {
		t.Errorf("the standby holds %s, want 3 (a row from before the copy and one from after)", got)
	}
	if got := queryString(t, primary.Connect(t, "postgres"), "SELECT state FROM pg_stat_replication"); got != "streaming" {
		t.Errorf("the primary's walsender is %q, want streaming", got)
	}

	primary.Stop(t)
	standby.Promote(t)
	standby.Exec(t, "postgres", "INSERT INTO after_copy VALUES (3)")
	if got := queryString(t, conn, "SELECT pg_is_in_recovery()::text"); got != "false" {
		t.Errorf("pg_is_in_recovery() = %s after promotion", got)
	}
}
