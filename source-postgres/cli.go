package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/term"

	"pgcapture/protocol"
	"pgcapture/source-postgres/config"
	"pgcapture/source-postgres/localcapture"
	"pgcapture/source-postgres/postgres"
	"pgcapture/sqlcapture"
)

// captureCommand runs a capture for a person rather than a Flow runtime:
// change documents go to stdout as JSON lines, and each checkpoint is
// written to the state file (which is its acknowledgement), so a restart
// resumes where the last run left off.
func captureCommand(ctx context.Context, c *postgres.Connector, args []string, stdout io.Writer, log *logrus.Logger) error {
	fs := flag.NewFlagSet("capture", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configPath := fs.String("config", "", "the endpoint configuration: a JSON `file`, as in the README's Configuration")
	statePath := fs.String("state", "", "the state `file`: read at start if it exists, rewritten atomically after the documents of its checkpoints (see --state-interval); without it nothing is kept")
	tableList := fs.String("tables", "", "a comma-separated `list` of schema.table names to capture (default: every discovered table)")
	stateInterval := fs.Duration("state-interval", localcapture.DefaultStateInterval, "how long checkpoints may wait to be written to the state file together (0: write each one); a crash repeats at most this long of documents")
	reset := fs.Bool("reset", false, "start over: ignore the state file, drop the replication slot if it exists, and backfill every table again")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, captureUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return fmt.Errorf("capture: %w (run source-postgres capture --help for the usage)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("capture: unexpected argument %q (run source-postgres capture --help for the usage)", fs.Arg(0))
	}
	if *stateInterval < 0 {
		return fmt.Errorf("capture: --state-interval must not be negative, got %v (0 writes the state file at every checkpoint)", *stateInterval)
	}
	if *configPath == "" {
		return errors.New("capture: --config FILE is required (run source-postgres capture --help for the usage)")
	}
	rawConfig, err := os.ReadFile(*configPath)
	if err != nil {
		return fmt.Errorf("reading the configuration: %w", err)
	}
	cfg, err := config.Parse(rawConfig)
	if err != nil {
		return fmt.Errorf("%s: %w", *configPath, err)
	}
	log.WithField("config", cfg.Redacted()).Debug("parsed the configuration")

	var state sqlcapture.State
	var mark *localcapture.OutputMark
	startOver := *reset // drop the slot if it exists, and backfill again
	if *statePath != "" && *reset {
		log.WithField("state", *statePath).Info("--reset: starting over; the state file is replaced at the first checkpoint")
	} else if *statePath != "" {
		if state, mark, err = localcapture.ReadStateFile(*statePath); err != nil {
			return err
		}
		switch {
		case !state.Started() && len(state.Streams) > 0:
			// The first checkpoint of a run stopped before it read
			// anything: the slot it made holds nothing read, and this
			// run starts over, as --reset would.
			log.WithField("state", *statePath).Info("the state file records no progress yet: starting over with a new replication slot")
			state, startOver = sqlcapture.State{}, true
		case state.Started():
			log.WithField("state", *statePath).Info("resuming from the state file")
		}
	}

	bindings, err := c.Discover(ctx, rawConfig)
	if err != nil {
		return err
	}
	// wanted maps each table named by --tables to whether it was discovered.
	wanted := map[string]bool{}
	for _, t := range strings.Split(*tableList, ",") {
		if t = strings.TrimSpace(t); t != "" {
			wanted[t] = false
		}
	}
	all := len(wanted) == 0
	var targets []postgres.Target
	names := map[string]string{} // state key → schema.table
	for _, b := range bindings {
		var res config.Resource
		if err := json.Unmarshal(b.ResourceConfig, &res); err != nil {
			return err
		}
		name := res.Namespace + "." + res.Stream
		if !all {
			if _, ok := wanted[name]; !ok {
				continue
			}
			wanted[name] = true
		}
		// The state file keys each table as the runtime keys a binding
		// that was never re-backfilled, so that it holds the state a
		// runtime would.
		key := protocol.StateKey([]string{res.Namespace, res.Stream}, 0)
		targets = append(targets, postgres.Target{Resource: b.ResourceConfig, StateKey: key})
		names[key] = name
	}
	var missing []string
	for name, found := range wanted {
		if !found {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("--tables names tables that were not discovered in database %q: %s (write them as schema.table, exactly as in the catalog)",
			cfg.Database, strings.Join(missing, ", "))
	}
	if len(targets) == 0 {
		return fmt.Errorf("there are no tables to capture in database %q", cfg.Database)
	}

	// Progress lines are for a person watching; a log file gets the
	// periodic log entries a runtime gets.
	var progress *localcapture.Progress
	var observer sqlcapture.ProgressObserver
	if term.IsTerminal(int(os.Stderr.Fd())) {
		progress = localcapture.NewProgress(os.Stderr, names, state, cfg.SkipBackfillTables())
		observer = progress
	}
	acks := sqlcapture.NewAcknowledgements()
	interval := *stateInterval
	if interval == 0 {
		interval = -1 // NewOutput's "each one"
	}
	out := localcapture.NewOutput(stdout, state, acks, localcapture.OutputOptions{StatePath: *statePath, StateInterval: interval, Progress: progress})
	cut, err := out.CutBack(mark)
	if err != nil {
		return err
	}
	if cut > 0 {
		log.WithFields(logrus.Fields{"bytes": cut, "offset": mark.Offset}).Info("cut the documents' file back to where the state file reaches: the documents after it were written by a run that stopped before checkpointing them, and are written again from here")
	}
	err = c.Capture(ctx, cfg, targets, state, out, acks, postgres.CaptureOptions{
		Mode:             postgres.ShellMode,
		Reset:            startOver,
		Progress:         observer,
		ProgressInterval: localcapture.StatusInterval,
		Opened: func() error {
			log.WithField("tables", len(targets)).Info("capturing; change documents follow on stdout")
			return nil
		},
	})
	// The documents and the checkpoints that waited are written out however
	// the capture ended; the capture's own error, if any, stays the last
	// line.
	if cerr := out.Close(); cerr != nil {
		if err == nil || sqlcapture.IsCancellation(err) {
			return cerr
		}
		log.WithError(cerr).Error("writing out the last documents and state")
	}
	return err
}

const captureUsage = `usage: source-postgres capture --config FILE [--state FILE [--state-interval D]] [--tables schema.t1,schema.t2] [--reset]

Captures the tables (default: all that discovery finds) and prints change
documents as JSON lines on stdout: each table's rows first (its backfill),
then every insert, update and delete as it commits. Each checkpoint is
written atomically to the state file, after the documents it covers
(checkpoints less than --state-interval apart are written together), and
a run with the same --state resumes from it. When stdout is a file, the
state file records how far into it its checkpoints reach, and a run that
appends to the same file (>>) first cuts off what a killed run wrote past
that. A replication slot that already exists is never dropped unless
--reset says so. Ctrl-C stops the capture.

Flags:
`
