package testsupport

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
)

func TestMergePatch(t *testing.T) {
	for _, tc := range []struct {
		target, patch, want string
	}{
		// RFC 7396, Appendix A.
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"a":1,"e":null}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		// An absent target is null.
		{``, `{"a":null,"b":1}`, `{"b":1}`},
		// Numbers keep their exact text; whitespace goes.
		{`{"n": 12345678901234567890}`, `{ "m" : 1.50 }`, `{"m":1.50,"n":12345678901234567890}`},
		// A connector state update, as in the fact sheet's transcript.
		{
			`{"cursor":"0/1","bindingStateV1":{"public%2Fusers":{"mode":"Pending","backfilled":0}}}`,
			`{"cursor":null,"bindingStateV1":{"public%2Fusers":{"mode":"Active","backfilled":2}}}`,
			`{"bindingStateV1":{"public%2Fusers":{"backfilled":2,"mode":"Active"}}}`,
		},
	} {
		got, err := MergePatch(json.RawMessage(tc.target), json.RawMessage(tc.patch))
		if err != nil {
			t.Errorf("MergePatch(%s, %s): %v", tc.target, tc.patch, err)
		} else if string(got) != tc.want {
			t.Errorf("MergePatch(%s, %s) = %s, want %s", tc.target, tc.patch, got, tc.want)
		}
	}
}

func TestMergePatchErrors(t *testing.T) {
	for _, tc := range []struct{ target, patch string }{
		{`{}`, `{"a":`},
		{`{}`, ``},
		{`{"a":`, `{"b":1}`},
		{`{}`, `{"a":{"b":tru}}`},
	} {
		if got, err := MergePatch(json.RawMessage(tc.target), json.RawMessage(tc.patch)); err == nil {
			t.Errorf("MergePatch(%s, %s) = %s, want an error", tc.target, tc.patch, got)
		}
	}
}

func TestReduce(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []string
		docs []string
		want map[string]string
	}{
		{
			name: "later values win, absent columns are kept",
			key:  []string{"/id"},
			docs: []string{
				`{"_meta":{"op":"c"},"id":1,"a":1,"b":1}`,
				`{"_meta":{"op":"c"},"id":2,"a":2}`,
				`{"_meta":{"op":"u"},"id":1,"b":2,"c":null}`,
			},
			want: map[string]string{
				`[1]`: `{"_meta":{"op":"u"},"a":1,"b":2,"c":null,"id":1}`,
				`[2]`: `{"_meta":{"op":"c"},"a":2,"id":2}`,
			},
		},
		{
			name: "a delete removes the key, a later insert starts afresh",
			key:  []string{"/id"},
			docs: []string{
				`{"_meta":{"op":"c"},"id":1,"a":1}`,
				`{"_meta":{"op":"c"},"id":2,"a":2}`,
				`{"_meta":{"op":"d"},"id":1}`,
				`{"_meta":{"op":"d"},"id":2}`,
				`{"_meta":{"op":"c"},"id":2,"b":3}`,
				`{"_meta":{"op":"d"},"id":3}`,
			},
			want: map[string]string{
				`[2]`: `{"_meta":{"op":"c"},"b":3,"id":2}`,
			},
		},
		{
			name: "column values are replaced, not merged",
			key:  []string{"/id"},
			docs: []string{
				`{"_meta":{"op":"c"},"id":1,"j":{"x":1,"y":[1,2]}}`,
				`{"_meta":{"op":"u"},"id":1,"j":{"y":[3]}}`,
			},
			want: map[string]string{
				`[1]`: `{"_meta":{"op":"u"},"id":1,"j":{"y":[3]}}`,
			},
		},
		{
			name: "_meta merges and keeps the first before",
			key:  []string{"/id"},
			docs: []string{
				`{"_meta":{"op":"c","source":{"loc":[1]}},"id":1}`,
				`{"_meta":{"op":"u","before":{"id":1,"v":"first"}},"id":1}`,
				`{"_meta":{"op":"u","before":{"id":1,"v":"second"},"source":{"loc":[3]}},"id":1}`,
			},
			want: map[string]string{
				`[1]`: `{"_meta":{"before":{"id":1,"v":"first"},"op":"u","source":{"loc":[3]}},"id":1}`,
			},
		},
		{
			name: "composite and nested keys",
			key:  []string{"/k/name", "/_meta/source/loc/1"},
			docs: []string{
				`{"_meta":{"source":{"loc":[0, 7, 9]}},"k":{"name":"a"},"v":1}`,
				`{"_meta":{"source":{"loc":[0,7,9]}},"k":{"name":"a"},"v":2}`,
				`{"_meta":{"source":{"loc":[0,8,9]}},"k":{"name":"a"},"v":3}`,
			},
			want: map[string]string{
				`["a",7]`: `{"_meta":{"source":{"loc":[0,7,9]}},"k":{"name":"a"},"v":2}`,
				`["a",8]`: `{"_meta":{"source":{"loc":[0,8,9]}},"k":{"name":"a"},"v":3}`,
			},
		},
		{
			name: "escaped pointer tokens",
			key:  []string{"/a~1b", "/c~0d"},
			docs: []string{`{"a/b":1,"c~d":"x"}`},
			want: map[string]string{`[1,"x"]`: `{"a/b":1,"c~d":"x"}`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs := make([]json.RawMessage, len(tc.docs))
			for i, d := range tc.docs {
				docs[i] = json.RawMessage(d)
			}
			reduced, err := Reduce(docs, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			got := make(map[string]string, len(reduced))
			for k, doc := range reduced {
				got[k] = string(doc)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("Reduce =\n%v\nwant\n%v", got, tc.want)
			}
		})
	}
}

func TestReduceErrors(t *testing.T) {
	for _, tc := range []struct {
		key     []string
		doc     string
		wantErr string
	}{
		{[]string{"/id"}, `[1]`, "document 0 is not a JSON object"},
		{[]string{"/id"}, `{"id":`, "document 0 is not a JSON object"},
		{[]string{"/id"}, `{"other":1}`, `document 0: key "/id": no such value`},
		{[]string{"/a/5"}, `{"a":[1]}`, `document 0: key "/a/5": no such value`},
		{[]string{"/a/b"}, `{"a":1}`, `document 0: key "/a/b": no such value`},
		{[]string{"id"}, `{"id":1}`, `key "id": a JSON pointer must be empty or start with "/"`},
	} {
		_, err := Reduce([]json.RawMessage{json.RawMessage(tc.doc)}, tc.key)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Reduce(%s, %q): error %v, want one containing %q", tc.doc, tc.key, err, tc.wantErr)
		}
	}
}

func BenchmarkReduce(b *testing.B) {
	docs := make([]json.RawMessage, 1000)
	for i := range docs {
		docs[i] = fmt.Appendf(nil, `{"_meta":{"op":"u","source":{"schema":"public","table":"t","loc":[1,%d,3]}},"id":%d,"name":"row %d","n":%d}`, i, i%100, i, i)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Reduce(docs, []string{"/id"}); err != nil {
			b.Fatal(err)
		}
	}
}
