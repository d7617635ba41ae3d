package config

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// DefaultPollInterval is how often a polled binding is read unless its
// "poll" says otherwise: frequent enough for dashboards, rare enough that a
// full refresh of a large table does not keep the database busy.
const DefaultPollInterval = 5 * time.Minute

// minPollInterval keeps a typo ("5ms" for "5m") from hammering the database.
const minPollInterval = 100 * time.Millisecond

// Polled reports whether the binding is read on a schedule rather than
// replicated: it has a query or the Polling mode.
func (r *Resource) Polled() bool {
	return r.Query != "" || r.Mode == ModePolling
}

// PollInterval returns the binding's poll interval. Validate has checked it.
func (r *Resource) PollInterval() time.Duration {
	if r.Poll == "" {
		return DefaultPollInterval
	}
	d, _ := time.ParseDuration(r.Poll)
	return d
}

// validatePolling reports the problems of the polling fields: only polled
// bindings may have them, and they must make sense together.
func (r *Resource) validatePolling() []error {
	var errs []error
	if !r.Polled() {
		for _, f := range []struct {
			name string
			set  bool
		}{{"id_columns", len(r.IDColumns) > 0}, {"cursor", len(r.Cursor) > 0}, {"poll", r.Poll != ""}} {
			if f.set {
				errs = append(errs, fmt.Errorf(`%q applies only to polled bindings: set "mode" to %q or give a "query"`, f.name, ModePolling))
			}
		}
		return errs
	}
	if r.Query != "" && r.Mode != ModeAutomatic && r.Mode != ModePolling {
		errs = append(errs, fmt.Errorf(`"mode" %q does not apply to a binding with a "query", which is always polled: leave "mode" empty or set it to %q`, r.Mode, ModePolling))
	}
	if r.Query != "" && len(r.IDColumns) == 0 {
		errs = append(errs, errors.New(`"id_columns" is required with a "query": name the result columns that identify a row, such as ["id"]`))
	}
	errs = append(errs, columnListProblems("id_columns", r.IDColumns)...)
	errs = append(errs, columnListProblems("cursor", r.Cursor)...)
	if r.Poll != "" {
		d, err := time.ParseDuration(r.Poll)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf(`"poll" %q is not a duration: write it as a number and a unit, such as "30s", "5m" or "1h"`, r.Poll))
		case d < minPollInterval:
			errs = append(errs, fmt.Errorf(`"poll" %q is shorter than %s`, r.Poll, minPollInterval))
		}
	}
	return errs
}

func columnListProblems(field string, columns []string) []error {
	var errs []error
	for i, c := range columns {
		switch {
		case c == "":
			errs = append(errs, fmt.Errorf("%q has an empty column name", field))
		case slices.Index(columns, c) != i:
			errs = append(errs, fmt.Errorf("%q names column %q twice", field, c))
		}
	}
	return errs
}
