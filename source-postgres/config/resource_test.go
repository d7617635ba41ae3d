package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseResource(t *testing.T) {
	for _, tc := range []struct {
		raw    string
		want   Resource
		errors []string // substrings of the error; nil if parsing must succeed
	}{
		{raw: `{"namespace": "public", "stream": "orders"}`,
			want: Resource{Namespace: "public", Stream: "orders"}},
		{raw: `{"namespace": "Sales", "stream": "Line Items", "syncMode": "incremental", "mode": "Only Changes"}`,
			want: Resource{Namespace: "Sales", Stream: "Line Items", SyncMode: "incremental", Mode: ModeOnlyChanges}},
		{raw: `{"namespace": "public", "stream": "t", "mode": "Without Primary Key"}`,
			want: Resource{Namespace: "public", Stream: "t", Mode: ModeWithoutPrimaryKey}},

		{raw: `{"stream": "orders"}`, errors: []string{`"namespace" is required`}},
		{raw: `{"namespace": "public", "stream": ""}`, errors: []string{`"stream" is required`}},
		{raw: `{"namespace": "public", "stream": "t", "syncMode": "full_refresh"}`,
			errors: []string{`"syncMode" "full_refresh" is not supported`}},
		{raw: `{"namespace": "public", "stream": "t", "mode": "precise"}`,
			errors: []string{`"mode" "precise" is not a backfill mode`, `"Precise"`, `"Without Primary Key"`}},
		{raw: `{"namespace": "public", "stream": "t", "priority": 1}`,
			errors: []string{`"priority" is not a known field; known fields are namespace, stream, syncMode, mode, query, id_columns, cursor, poll`}},
		{raw: `{"namespace": "public", "stream": 7}`, errors: []string{`"stream" must be a string, got 7`}},
		{raw: `"public.orders"`, errors: []string{`must be a JSON object`}},
	} {
		r, err := ParseResource([]byte(tc.raw))
		if tc.errors == nil {
			if err != nil {
				t.Errorf("ParseResource(%s): %v", tc.raw, err)
			} else if !reflect.DeepEqual(*r, tc.want) {
				t.Errorf("ParseResource(%s) = %+v, want %+v", tc.raw, *r, tc.want)
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
