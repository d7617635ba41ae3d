// Command source-postgres captures changes from PostgreSQL.
//
// Run without arguments it serves one Flow capture protocol session on
// stdin/stdout, as the Flow runtime runs it; logs go to stderr.
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/term"

	"pgcapture/protocol"
	"pgcapture/source-postgres/postgres"
	"pgcapture/sqlcapture"
)

func main() {
	log, err := newLogger(os.Getenv("LOG_LEVEL"), os.Getenv("LOG_FORMAT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := runUntilSignalled(log); err != nil {
		// The runtime reports a failed connector by the last line of its
		// stderr, so the error is the last thing logged. A person at a
		// terminal gets it as a sentence rather than a log entry.
		if os.Getenv("LOG_FORMAT") == "" && term.IsTerminal(int(os.Stderr.Fd())) {
			sentence, detail := humanError(err)
			if detail != "" {
				log.Debug(detail)
			}
			fmt.Fprintln(os.Stderr, "source-postgres: "+sentence)
		} else {
			log.Error(err.Error())
		}
		os.Exit(1)
	}
}

// runUntilSignalled runs the connector until it finishes or an interrupt or
// SIGTERM ends it; an end by signal is a clean exit.
func runUntilSignalled(log *logrus.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopProfile, err := startProfile(os.Getenv("PGCAPTURE_CPUPROFILE"))
	if err != nil {
		return err
	}
	err = run(ctx, os.Args[1:], os.Stdin, os.Stdout, log)
	stopProfile()
	if sqlcapture.IsCancellation(err) && ctx.Err() != nil {
		return nil
	}
	return err
}

// humanError splits an error into one line for a person, its problems
// joined by semicolons, and the underlying causes ("caused by: …" lines,
// see config.ExplainConnectError) that only debugging needs.
func humanError(err error) (sentence, detail string) {
	msg, detail, _ := strings.Cut(err.Error(), "\ncaused by: ")
	var parts []string
	for line := range strings.Lines(msg) {
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, "; "), detail
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, log *logrus.Logger) error {
	c := &postgres.Connector{Log: log, DocsURL: cmp.Or(os.Getenv("DOCS_URL"), postgres.DefaultDocsURL)}
	if raw := os.Getenv("LOG_PROGRESS_INTERVAL"); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil || d <= 0 {
			return fmt.Errorf("LOG_PROGRESS_INTERVAL %q is not a positive duration such as 30s or 5m", raw)
		}
		c.ProgressInterval = d
	}
	if len(args) == 0 {
		codec, err := protocol.CodecFromEnv(os.Getenv("FLOW_RUNTIME_CODEC"))
		if err != nil {
			return err
		}
		return c.Serve(ctx, protocol.NewReader(stdin, codec), protocol.NewWriter(stdout, codec))
	}
	switch args[0] {
	case "capture":
		return captureCommand(ctx, c, args[1:], stdout, log)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "source-postgres", buildVersion())
		return nil
	default:
		return fmt.Errorf("unknown command %q (run source-postgres --help for the usage)", args[0])
	}
}

// version is the connector's version, set at build time with
// -ldflags "-X main.version=v1.2.3"; buildVersion falls back to what the
// Go toolchain recorded.
var version string

// buildVersion returns version, or else the VCS revision the binary was
// built from (with "-dirty" for uncommitted changes), or else the module
// version, or "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	var revision, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if revision != "" {
		if len(revision) > 12 {
			revision = revision[:12]
		}
		if modified == "true" {
			revision += "-dirty"
		}
		return revision
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	return "devel"
}

const usage = `usage:
  source-postgres
      Serves one Flow capture protocol request (or open session) on stdin/stdout;
      FLOW_RUNTIME_CODEC=proto|json selects the codec (proto by default).
  source-postgres capture --config FILE [--state FILE] [--tables schema.t1,schema.t2] [--reset]
      Captures the tables (default: all) and prints change documents as JSON lines
      on stdout. Each checkpoint is written atomically to the state file, and a
      restart with the same state file resumes from it. See capture --help.
  source-postgres --version
      Prints the version.
Logs go to stderr: LOG_LEVEL=error|warn|info|debug|trace, LOG_FORMAT=json|text|color;
LOG_PROGRESS_INTERVAL=30s sets how often a capture logs its lag and backfill progress.
`

// startProfile writes a CPU profile to path until the returned function is
// called, for measuring the connector as it really runs (see bench/).
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("PGCAPTURE_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close() //nolint:errcheck // the profile never started; its error is the one returned
		return nil, fmt.Errorf("PGCAPTURE_CPUPROFILE: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "PGCAPTURE_CPUPROFILE: the profile may be incomplete: %v\n", err)
		}
	}, nil
}

func newLogger(level, format string) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	lvl := logrus.InfoLevel
	if level != "" {
		var err error
		if lvl, err = logrus.ParseLevel(level); err != nil {
			return nil, fmt.Errorf("LOG_LEVEL %q is not one of error, warn, info, debug, trace", level)
		}
	}
	log.SetLevel(lvl)
	switch strings.ToLower(format) {
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{})
	case "", "text", "color":
		log.SetFormatter(&logrus.TextFormatter{DisableColors: strings.ToLower(format) != "color", FullTimestamp: true})
	default:
		return nil, fmt.Errorf("LOG_FORMAT %q is not one of json, text, color", format)
	}
	return log, nil
}
