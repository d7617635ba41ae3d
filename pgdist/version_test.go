package pgdist

import (
	"fmt"
	"testing"
)

func TestParseWant(t *testing.T) {
	tests := []struct {
		in      string
		want    Want
		wantErr bool
	}{
		{in: "17", want: Want{Major: 17, Minor: -1}},
		{in: " 16 ", want: Want{Major: 16, Minor: -1}},
		{in: "17.10", want: Want{Major: 17, Minor: 10}},
		{in: "17.0", want: Want{Major: 17, Minor: 0}},
		{in: "", wantErr: true},
		{in: "0", wantErr: true},
		{in: "017", wantErr: true},
		{in: "17.", wantErr: true},
		{in: "17.10.0", wantErr: true},
		{in: "v17", wantErr: true},
		{in: "latest", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseWant(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseWant(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestComparePackageVersions(t *testing.T) {
	// Each version precedes the next.
	ordered := []string{
		"14.3.0-alpha.2",
		"14.3.0-alpha.14",
		"14.3.0-beta.6",
		"14.3.0",
		"15.5.1-beta.9",
		"15.5.1-beta.11",
		"15.10.0-beta.15",
		"17.9.0-beta.17",
		"17.10.0-beta.16",
		"17.10.0-beta.17",
		"17.10.0-beta.17.1",
		"17.10.0-beta.x",
	}
	for i := range ordered {
		for j := range ordered {
			a, okA := parsePackageVersion(ordered[i])
			b, okB := parsePackageVersion(ordered[j])
			if !okA || !okB {
				t.Fatalf("parsing %q or %q failed", ordered[i], ordered[j])
			}
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.compare(b); got != want {
				t.Errorf("compare(%s, %s) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func TestParsePackageVersionRejects(t *testing.T) {
	for _, s := range []string{"", "17", "17.10", "17.10.0.1", "17.x.0", "17.10.0-", "17.10.0-beta..1", "017.1.0"} {
		if v, ok := parsePackageVersion(s); ok {
			t.Errorf("parsePackageVersion(%q) = %+v, want a refusal", s, v)
		}
	}
	v, ok := parsePackageVersion("17.10.0-beta.17+build.5")
	if !ok || v.postgres() != "17.10" || fmt.Sprint(v.pre) != "[beta 17]" {
		t.Errorf("parsePackageVersion with build metadata = %+v, %v", v, ok)
	}
}

func TestNewest(t *testing.T) {
	// The order the registry lists versions in is not their precedence.
	published := []string{
		"17.2.0-beta.15", "17.9.0-beta.17", "17.10.0-beta.17", "17.10.0-beta.16", "18.4.0-beta.17",
		"16.14.0-beta.17", "16.1.1-beta.11", "14.3.0-alpha.14", "14.3.0-alpha.2", "not-a-version",
	}
	tests := []struct {
		want    string
		version string // "" for none
	}{
		{"17", "17.10.0-beta.17"},
		{"17.9", "17.9.0-beta.17"},
		{"17.2", "17.2.0-beta.15"},
		{"16", "16.14.0-beta.17"},
		{"16.1", "16.1.1-beta.11"},
		{"18", "18.4.0-beta.17"},
		{"14", "14.3.0-alpha.14"},
		{"17.3", ""},
		{"13", ""},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			w, err := ParseWant(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := w.newest(published)
			if got := v.String(); got != tt.version || ok != (tt.version != "") {
				t.Errorf("newest %s = %q (%v), want %q", tt.want, got, ok, tt.version)
			}
		})
	}
	if got := fmt.Sprint(majors(published)); got != "[14 16 17 18]" {
		t.Errorf("majors = %s", got)
	}
}

func TestPlatform(t *testing.T) {
	tests := []struct{ goos, goarch, want string }{
		{"linux", "amd64", "linux-x64"},
		{"linux", "arm64", "linux-arm64"},
		{"linux", "386", "linux-ia32"},
		{"linux", "arm", "linux-arm"},
		{"linux", "ppc64le", "linux-ppc64"},
		{"darwin", "amd64", "darwin-x64"},
		{"darwin", "arm64", "darwin-arm64"},
		{"windows", "amd64", "windows-x64"},
		{"windows", "arm64", ""},
		{"freebsd", "amd64", ""},
		{"linux", "riscv64", ""},
	}
	for _, tt := range tests {
		got, err := Platform(tt.goos, tt.goarch)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("Platform(%s, %s) = %q, %v; want %q", tt.goos, tt.goarch, got, err, tt.want)
		}
	}
}
