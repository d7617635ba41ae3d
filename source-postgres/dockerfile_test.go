package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"pgcapture/protocol"
)

// instruction is one instruction of a Dockerfile: its keyword, upper-cased,
// and its arguments with continuation lines joined.
type instruction struct {
	keyword, args string
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var pending string
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || (line == "" && pending == "") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending += cont + " "
			continue
		}
		line = pending + line
		pending = ""
		keyword, args, _ := strings.Cut(line, " ")
		out = append(out, instruction{strings.ToUpper(keyword), strings.TrimSpace(args)})
	}
	return out
}

// keyValues parses LABEL and ENV arguments: key=value pairs, values
// optionally double-quoted.
func keyValues(args string) map[string]string {
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_.-]*)=("[^"]*"|\S+)`).FindAllStringSubmatch(args, -1) {
		value := m[2]
		if unquoted, err := strconv.Unquote(value); err == nil {
			value = unquoted
		}
		out[m[1]] = value
	}
	return out
}

// baseImageArgs returns the defaults of the ARGs declared before the first
// FROM, the only ones a FROM line can use, e.g. BASE_IMAGE.
func baseImageArgs(instructions []instruction) map[string]string {
	args := map[string]string{}
	for _, in := range instructions {
		if in.keyword == "FROM" {
			break
		}
		if in.keyword == "ARG" {
			name, value, _ := strings.Cut(in.args, "=")
			args[name] = strings.Trim(value, `"`)
		}
	}
	return args
}

// TestDockerfile checks what the image promises the Flow runtime and its
// operators without building it (TestImage builds and runs it where podman
// is at hand): a static binary, labels and environment that agree on the
// protocol and codec, and a non-root user.
func TestDockerfile(t *testing.T) {
	instructions := parseDockerfile(t, "../Dockerfile")
	args := baseImageArgs(instructions)
	var stages int
	var finalStage []instruction
	for _, in := range instructions {
		if in.keyword == "FROM" {
			stages++
			finalStage = nil
		}
		finalStage = append(finalStage, in)
	}
	if stages < 2 {
		t.Fatalf("the Dockerfile has %d stages, want a build stage and a small final one", stages)
	}
	base := os.Expand(finalStage[0].args, func(name string) string { return args[name] })
	if !strings.Contains(base, "distroless/static") && base != "scratch" {
		t.Errorf("the final stage is based on %q, want a base without a C library or shell (distroless/static or scratch)", base)
	}

	labels, env := map[string]string{}, map[string]string{}
	var user, entrypoint, copied string
	for _, in := range finalStage {
		switch in.keyword {
		case "LABEL":
			for k, v := range keyValues(in.args) {
				labels[k] = v
			}
		case "ENV":
			for k, v := range keyValues(in.args) {
				env[k] = v
			}
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "COPY":
			fields := strings.Fields(in.args)
			copied = fields[len(fields)-1]
		}
	}
	if labels["CONNECTOR_PROTOCOL"] != "flow-capture" {
		t.Errorf("LABEL CONNECTOR_PROTOCOL is %q, want flow-capture", labels["CONNECTOR_PROTOCOL"])
	}
	// The runtime picks the codec from the label, the connector from the
	// environment: they must agree, on a codec the connector speaks.
	if labels["FLOW_RUNTIME_CODEC"] != env["FLOW_RUNTIME_CODEC"] {
		t.Errorf("LABEL FLOW_RUNTIME_CODEC=%q but ENV FLOW_RUNTIME_CODEC=%q", labels["FLOW_RUNTIME_CODEC"], env["FLOW_RUNTIME_CODEC"])
	}
	if _, err := protocol.CodecFromEnv(env["FLOW_RUNTIME_CODEC"]); err != nil || env["FLOW_RUNTIME_CODEC"] == "" {
		t.Errorf("ENV FLOW_RUNTIME_CODEC=%q is not a codec the connector speaks: %v", env["FLOW_RUNTIME_CODEC"], err)
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER is %q, want a numeric user other than root (Kubernetes' runAsNonRoot cannot check a name)", user)
	}
	if entrypoint != `["`+copied+`"]` {
		t.Errorf("ENTRYPOINT %s does not run the copied binary %s", entrypoint, copied)
	}

	var build string
	for _, in := range instructions {
		if in.keyword == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	if !strings.Contains(build, "CGO_ENABLED=0") {
		t.Errorf("the build %q does not disable cgo, so the binary may need a C library the final image lacks", build)
	}
	if os.Getenv("PGCAPTURE_TEST_STATIC_BUILD") != "1" {
		t.Log("set PGCAPTURE_TEST_STATIC_BUILD=1 to run the Dockerfile's build and check that the binary is static (a minute with a cold cache)")
		return
	}
	// The Dockerfile's own build command, without the RUN options (a cache
	// mount), writing into a temporary directory.
	binary := filepath.Join(t.TempDir(), "source-postgres")
	build = regexp.MustCompile(`^(--\S+\s+)*`).ReplaceAllString(build, "")
	cmd := exec.Command("sh", "-c", regexp.MustCompile(`-o \S+`).ReplaceAllString(build, "-o "+binary))
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, out)
	}
	f, err := elf.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (it has a %s program header; libraries %v)", p.Type, libs)
		}
	}
}
