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
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"

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
		// stderr, so the error is the last thing logged.
		log.Error(err.Error())
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

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, log *logrus.Logger) error {
	c := &postgres.Connector{Log: log, DocsURL: cmp.Or(os.Getenv("DOCS_URL"), postgres.DefaultDocsURL)}
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
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
}

const usage = `usage:
  source-postgres
      Serves one Flow capture protocol request (or open session) on stdin/stdout;
      FLOW_RUNTIME_CODEC=proto|json selects the codec (proto by default).
  source-postgres capture --config FILE [--state FILE] [--tables schema.t1,schema.t2]
      Captures the tables (default: all) and prints change documents as JSON lines
      on stdout. Each checkpoint is written atomically to the state file, and a
      restart with the same state file resumes from it.
Logs go to stderr: LOG_LEVEL=error|warn|info|debug|trace, LOG_FORMAT=json|text|color.
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
