// Package replication reads a pgoutput logical replication slot and turns
// its messages into the capture engine's change events, and tells the slot
// what may be released. Its files, in the order a message travels:
//
//   - stream.go: START_REPLICATION, the receive loop, status updates and
//     acknowledgements (the slot's confirmed position);
//   - decode.go: one pgoutput message dispatched by its type;
//   - pgoutput.go: the wire format of row messages, decoded without copies;
//   - binary.go: binary values (PostgreSQL 14+) rewritten into their text;
//   - relations.go: the Relation messages, cached per relation id;
//   - documents.go: a decoded row change built into a keyed document;
//   - batches.go: events handed to the engine in bounded, reused batches.
package replication

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sirupsen/logrus"

	"pgcapture/source-postgres/discovery"
	"pgcapture/source-postgres/document"
	"pgcapture/source-postgres/faults"
	"pgcapture/source-postgres/pgtypes"
	"pgcapture/sqlcapture"
)

// Options configure a Stream.
type Options struct {
	Slot        string
	Publication string
	// Tables are the captured tables; changes of other tables are dropped.
	Tables map[sqlcapture.StreamID]*discovery.Table
	// Watermarks is the watermarks table, whose rows for Slot are fences.
	Watermarks sqlcapture.StreamID
	Types      *pgtypes.Registry
	// SourceTag, if set, is every document's _meta.source.tag.
	SourceTag string
	// Committed, if set, is told the id of every delivered transaction.
	Committed func(xid uint32)
	Logger    logrus.FieldLogger
	// StatusInterval is how often the acknowledged position is reported to
	// the server even when nothing changes (well under wal_sender_timeout).
	StatusInterval time.Duration
	// IdleInterval is how often an idle stream reports the server's position
	// as a Keepalive, so an idle capture's slot keeps advancing.
	IdleInterval time.Duration
	// Timeout, if set, is the liveness deadline: the stream fails when the
	// server sends nothing for this long while the stream is waiting for
	// it. Status updates then ask for a reply at least three times per
	// Timeout, so a live server is never silent that long.
	Timeout time.Duration
	// Server names the server in errors, as host:port.
	Server string
	// Acknowledged is the position reported as confirmed until Acknowledge
	// reports a later one (0: the start position).
	Acknowledged uint64
	// Streaming asks for large transactions to be streamed while in
	// progress (protocol version 2, PostgreSQL 14 and later); SpillDir is
	// where their changes wait for the commit beyond a bound in memory
	// (default: the temporary directory). See streamed.go.
	Streaming bool
	SpillDir  string
	// Binary asks for values in binary (PostgreSQL 14+): see binary.go.
	Binary bool
}

// Stream is an open replication stream.
type Stream struct {
	conn *pgconn.PgConn
	opts Options
	log  logrus.FieldLogger

	events chan *sqlcapture.Batch
	// free holds released batches for reuse.
	free   chan *sqlcapture.Batch
	closed chan struct{}
	exited chan struct{}
	err    error

	closeOnce sync.Once
	writeMu   sync.Mutex
	acked     atomic.Uint64
	// received counts the messages received, and handingOff is set while
	// the receiver waits for the engine to take a batch rather than for
	// the server: the liveness deadline watches both.
	received   atomic.Uint64
	handingOff atomic.Bool
	// silence is the liveness deadline's error, set before it closes the
	// connection.
	silence atomic.Pointer[error]
	// idlePending: an idle position went unreported for being too soon.
	idlePending atomic.Bool
	// fence is the pending fence at a WAL position (lsnfence.go), if any;
	// fenceSet tells the status reporter that one was set.
	fence    atomic.Pointer[lsnFence]
	fenceSet chan struct{}

	// Everything below belongs to the receiving goroutine.
	relations relationCache
	streamed  streamedTxns
	batch     *sqlcapture.Batch // being filled
	// oldKey and newKey are scratch space for detecting key changes.
	oldKey, newKey []byte
	inTxn          bool
	txn            document.Source
	msg            rowMessage
	prevEnd        uint64
	idleAt         time.Time
	idleLSN        uint64
	// serverEnd is the server's WAL position as its last keepalive said,
	// which commits carry to tell how far behind the capture is.
	serverEnd uint64
	// binText holds the current row's binary values rewritten as text
	// (binary mode), binSpans where each is.
	binText  []byte
	binSpans []binSpan
}

var _ sqlcapture.ReplicationStream = (*Stream)(nil)

// Start begins streaming from slot at startLSN (0: from the slot's confirmed
// position). The connection must be a replication=database connection; the
// Stream owns it from now on.
func Start(ctx context.Context, conn *pgconn.PgConn, startLSN uint64, opts Options) (*Stream, error) {
	args := append(protocolArgs(opts),
		"publication_names "+quoteLiteral(pgx.Identifier{opts.Publication}.Sanitize()),
	)
	if opts.Binary {
		args = append(args, "binary 'true'")
	}
	if err := pglogrepl.StartReplication(ctx, conn, pgx.Identifier{opts.Slot}.Sanitize(), pglogrepl.LSN(startLSN), pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		return nil, fmt.Errorf("starting replication from slot %q at %s: %w", opts.Slot, pglogrepl.LSN(startLSN), err)
	}
	s := newStream(conn, startLSN, opts)
	go s.receive()
	go s.reportStatus()
	if opts.Timeout > 0 {
		go s.watchSilence()
	}
	return s, nil
}

// newStream sets up a Stream over a connection already streaming from
// startLSN; nothing runs until its goroutines are started.
func newStream(conn *pgconn.PgConn, startLSN uint64, opts Options) *Stream {
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = 10 * time.Second
	}
	if opts.IdleInterval <= 0 {
		opts.IdleInterval = time.Second
	}
	if opts.Timeout > 0 {
		opts.StatusInterval = min(opts.StatusInterval, opts.Timeout/3)
		opts.IdleInterval = min(opts.IdleInterval, opts.StatusInterval)
	}
	if opts.Logger == nil {
		opts.Logger = logrus.StandardLogger()
	}
	s := &Stream{
		conn:      conn,
		opts:      opts,
		log:       opts.Logger,
		events:    make(chan *sqlcapture.Batch, batchesQueued),
		free:      make(chan *sqlcapture.Batch, batchesQueued+2),
		closed:    make(chan struct{}),
		exited:    make(chan struct{}),
		fenceSet:  make(chan struct{}, 1),
		relations: newRelationCache(opts),
		streamed:  newStreamedTxns(opts.SpillDir),
		prevEnd:   startLSN,
		idleLSN:   startLSN,
	}
	s.acked.Store(startLSN)
	if opts.Acknowledged != 0 {
		s.acked.Store(opts.Acknowledged)
	}
	return s
}

// Events implements sqlcapture.ReplicationStream.
func (s *Stream) Events() <-chan *sqlcapture.Batch { return s.events }

// Err implements sqlcapture.ReplicationStream.
func (s *Stream) Err() error {
	select {
	case <-s.exited:
		return s.err
	default:
		return nil
	}
}

// Acknowledge records that everything up to cursor is durably captured and
// tells the server at once, which advances the slot's confirmed_flush_lsn.
func (s *Stream) Acknowledge(ctx context.Context, cursor string) error {
	lsn, err := pglogrepl.ParseLSN(cursor)
	if err != nil {
		return fmt.Errorf("acknowledging cursor %q: %w", cursor, err)
	}
	for {
		old := s.acked.Load()
		if uint64(lsn) <= old || s.acked.CompareAndSwap(old, uint64(lsn)) {
			break
		}
	}
	return s.sendStatus(ctx, false)
}

// Close reports the acknowledged position one last time and ends the stream
// with CopyDone, so the slot keeps exactly what was acknowledged.
func (s *Stream) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.closed) })
	select {
	case <-s.exited:
		return s.conn.Close(ctx)
	default:
	}
	err := s.sendStatus(ctx, false)
	if err == nil {
		s.writeMu.Lock()
		s.conn.Frontend().Send(&pgproto3.CopyDone{})
		err = s.conn.Frontend().Flush()
		s.writeMu.Unlock()
	}
	select {
	case <-s.exited:
	case <-ctx.Done():
	}
	if cerr := s.conn.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// sendStatus reports the acknowledged position. Asking for a reply makes
// the server answer with a keepalive carrying its position, which an idle
// stream turns into a checkpoint.
func (s *Stream) sendStatus(ctx context.Context, replyRequested bool) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	lsn := pglogrepl.LSN(s.acked.Load())
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn,
		WALFlushPosition: lsn,
		WALApplyPosition: lsn,
		ReplyRequested:   replyRequested,
	})
	if err != nil {
		return faults.Classify(fmt.Errorf("sending the replication status update: %w", err))
	}
	return nil
}

// reportStatus sends the acknowledged position every StatusInterval, and
// sooner, at IdleInterval, when the stream passed over an idle position it
// did not report yet: the server's reply carries its position again.
func (s *Stream) reportStatus() {
	ticker := time.NewTicker(s.opts.IdleInterval)
	defer ticker.Stop()
	// While a fence at a WAL position waits, the server is asked for its
	// position often: it may not send one by itself when it catches up.
	// The ticker runs only then (fenceWaiting is nil otherwise).
	var fenceTicker *time.Ticker
	var fenceWaiting <-chan time.Time
	defer func() {
		if fenceTicker != nil {
			fenceTicker.Stop()
		}
	}()
	last := time.Now()
	for {
		select {
		case <-s.fenceSet:
			if fenceTicker == nil {
				fenceTicker = time.NewTicker(fencePoll)
				fenceWaiting = fenceTicker.C
			}
		case <-fenceWaiting:
			if s.fence.Load() == nil {
				fenceTicker.Stop()
				fenceTicker, fenceWaiting = nil, nil
				continue
			}
			if err := s.sendStatus(context.Background(), true); err != nil {
				s.log.WithError(err).Debug("asking for the server's position failed")
			}
		case <-ticker.C:
			if !s.idlePending.Swap(false) && time.Since(last) < s.opts.StatusInterval {
				continue
			}
			if err := s.sendStatus(context.Background(), true); err != nil {
				s.log.WithError(err).Debug("periodic status update failed")
			}
			last = time.Now()
		case <-s.exited:
			return
		}
	}
}

// fencePoll is how often the server is asked for its position while a
// fence at a WAL position waits.
const fencePoll = 20 * time.Millisecond

// receive runs the receive loop until the stream ends, then closes Events
// with the reason in Err.
func (s *Stream) receive() {
	err := s.receiveLoop()
	s.discardStreamed()
	if silence := s.silence.Load(); silence != nil {
		err = *silence
	} else if err != nil {
		select {
		case <-s.closed:
			err = nil // a failure while shutting down is not the stream's error
		default:
			err = faults.Classify(err)
		}
	}
	s.err = err
	// exited first: a consumer that sees Events closed must find the
	// reason in Err, which reads it only once exited is closed.
	close(s.exited)
	close(s.events)
}

// receiveLoop reads the replication protocol: keepalives carry the server's
// position, XLogData a pgoutput message, CopyDone the end after Close.
func (s *Stream) receiveLoop() error {
	for {
		// A plain background context: a cancellable one makes every receive
		// start a context watcher, which costs on this per-message path.
		// Close ends a blocked receive by closing the connection.
		msg, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			return fmt.Errorf("receiving from the replication stream: %w", err)
		}
		s.received.Add(1)
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return err
				}
				if pkm.ReplyRequested {
					if err := s.sendStatus(context.Background(), false); err != nil {
						return err
					}
				}
				s.serverEnd = max(s.serverEnd, uint64(pkm.ServerWALEnd))
				s.fenceAtKeepalive(uint64(pkm.ServerWALEnd))
				s.idle(uint64(pkm.ServerWALEnd))
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return err
				}
				if err := s.decode(uint64(xld.WALStart), xld.WALData); err != nil {
					return err
				}
			}
		case *pgproto3.CopyDone:
			return nil
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m))
		}
	}
}

// watchSilence enforces the liveness deadline: when the receiver has waited
// on the server for Timeout without a message, it records the silence as
// the stream's error and closes the connection, which ends the receiver's
// wait. Without it, a partition that drops packets silently leaves the
// receiver blocked for as long as TCP takes to give up, if it ever does (a
// paused server's kernel keeps acknowledging).
func (s *Stream) watchSilence() {
	tick := time.NewTicker(min(s.opts.Timeout/4, time.Second))
	defer tick.Stop()
	seen, heard := s.received.Load(), time.Now()
	for {
		select {
		case <-s.exited:
			return
		case <-tick.C:
		}
		if n := s.received.Load(); n != seen || s.handingOff.Load() {
			seen, heard = n, time.Now()
			continue
		}
		if silent := time.Since(heard); silent >= s.opts.Timeout {
			err := sqlcapture.Transient(fmt.Errorf("the replication stream from %s received nothing for %s (advanced.network_timeout is %s): the server, or the network to it, stopped responding",
				s.opts.Server, silent.Round(100*time.Millisecond), s.opts.Timeout))
			s.silence.Store(&err)
			s.conn.Conn().Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
			return
		}
	}
}

// idle reports the server's position while no transaction is open: every
// transaction committing below it has been delivered, so a checkpoint there
// lets the slot advance past WAL that no captured table wrote.
func (s *Stream) idle(walEnd uint64) {
	if s.inTxn || walEnd <= s.idleLSN {
		return
	}
	if time.Since(s.idleAt) < s.opts.IdleInterval {
		// Too soon after the last one to be worth a checkpoint; ask again
		// at the next interval rather than waiting for the server.
		s.idlePending.Store(true)
		return
	}
	s.idleLSN, s.idleAt = walEnd, time.Now()
	s.send(&sqlcapture.Keepalive{Cursor: pglogrepl.LSN(walEnd).String(), Position: walEnd})
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
