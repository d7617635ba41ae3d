package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParsePolledResource(t *testing.T) {
	for _, tc := range []struct {
		raw    string
		want   *Resource
		poll   time.Duration
		errors []string // substrings of the error; nil if parsing must succeed
	}{
		{raw: `{"namespace": "public", "stream": "orders", "mode": "Polling"}`,
			want: &Resource{Namespace: "public", Stream: "orders", Mode: ModePolling}, poll: DefaultPollInterval},
		{raw: `{"namespace": "public", "stream": "orders", "mode": "Polling", "cursor": ["updated_at"], "poll": "30s"}`,
			want: &Resource{Namespace: "public", Stream: "orders", Mode: ModePolling, Cursor: []string{"updated_at"}, Poll: "30s"}, poll: 30 * time.Second},
		{raw: `{"namespace": "sales", "stream": "big_orders", "query": "SELECT * FROM orders WHERE total > 100", "id_columns": ["id"]}`,
			want: &Resource{Namespace: "sales", Stream: "big_orders", Query: "SELECT * FROM orders WHERE total > 100", IDColumns: []string{"id"}}, poll: DefaultPollInterval},

		{raw: `{"namespace": "public", "stream": "v", "query": "SELECT 1 AS id"}`,
			errors: []string{`"id_columns" is required with a "query"`}},
		{raw: `{"namespace": "public", "stream": "v", "query": "SELECT 1 AS id", "id_columns": ["id"], "poll": "5 minutes"}`,
			errors: []string{`"poll" "5 minutes" is not a duration`, `"5m"`}},
		{raw: `{"namespace": "public", "stream": "v", "query": "SELECT 1 AS id", "id_columns": ["id"], "poll": "1ms"}`,
			errors: []string{`"poll" "1ms" is shorter than 100ms`}},
		{raw: `{"namespace": "public", "stream": "v", "query": "SELECT 1 AS id", "id_columns": ["id", "id"], "cursor": [""]}`,
			errors: []string{`"id_columns" names column "id" twice`, `"cursor" has an empty column name`}},
		{raw: `{"namespace": "public", "stream": "v", "query": "SELECT 1 AS id", "id_columns": ["id"], "mode": "Precise"}`,
			errors: []string{`"mode" "Precise" does not apply to a binding with a "query"`}},
		{raw: `{"namespace": "public", "stream": "t", "cursor": ["updated_at"], "poll": "1m"}`,
			errors: []string{`"cursor" applies only to polled bindings`, `"poll" applies only to polled bindings`}},
	} {
		r, err := ParseResource([]byte(tc.raw))
		if tc.errors == nil {
			if err != nil {
				t.Errorf("ParseResource(%s): %v", tc.raw, err)
				continue
			}
			if !reflect.DeepEqual(r, tc.want) {
				t.Errorf("ParseResource(%s) = %+v, want %+v", tc.raw, *r, *tc.want)
			}
			if !r.Polled() || r.PollInterval() != tc.poll {
				t.Errorf("ParseResource(%s): polled %t every %s, want polled every %s", tc.raw, r.Polled(), r.PollInterval(), tc.poll)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseResource(%s) succeeded, want an error", tc.raw)
			continue
		}
		for _, want := range tc.errors {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ParseResource(%s) error %q\ndoes not contain %q", tc.raw, err, want)
			}
		}
	}
}
