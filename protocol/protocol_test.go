package protocol

import (
	"strings"
	"testing"
)

func TestCodecFromEnv(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  Codec
	}{
		{"", Proto},
		{"proto", Proto},
		{"json", JSON},
	} {
		got, err := CodecFromEnv(tc.value)
		if err != nil || got != tc.want {
			t.Errorf("CodecFromEnv(%q) = %v, %v; want %v", tc.value, got, err, tc.want)
		}
		if tc.value != "" && got.String() != tc.value {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.value)
		}
	}
	for _, value := range []string{"JSON", "protobuf", " json", "yaml"} {
		_, err := CodecFromEnv(value)
		if err == nil {
			t.Errorf("CodecFromEnv(%q) succeeded, want an error", value)
			continue
		}
		for _, want := range []string{"FLOW_RUNTIME_CODEC", `"proto"`, `"json"`, value} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("CodecFromEnv(%q) error %q does not mention %q", value, err, want)
			}
		}
	}
}
