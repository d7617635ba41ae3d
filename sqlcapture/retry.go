package sqlcapture

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sirupsen/logrus"
)

// transientError is a failure that reconnecting may cure: a connection
// reset, a server restarting, a network gone silent.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// Transient marks err as a failure of the connection rather than of the
// capture, one that reconnecting may cure. A Database wraps the errors it
// classifies so; the engine then reconnects and carries on instead of
// ending the capture. Wrapping a Transient error (with %w) keeps the mark.
func Transient(err error) error {
	if err == nil || IsTransient(err) {
		return err
	}
	return &transientError{err: err}
}

// IsTransient reports whether err, or an error it wraps, was marked by
// Transient.
func IsTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

// Backoff between reconnection attempts: exponential from
// Options.RetryDelay up to retryMaxDelay, each delay jittered to between
// half and all of it, so that captures cut off together do not all come
// back at the same instant.
const (
	DefaultRetryDelay = 250 * time.Millisecond
	retryMaxDelay     = 10 * time.Second
)

// retryDelay returns the jittered wait before the given attempt (1-based).
func (c *capture) retryDelay(attempt int) time.Duration {
	d := c.opts.RetryDelay << min(attempt-1, 16)
	d = min(d, retryMaxDelay)
	return d/2 + rand.N(d/2+1)
}

// recover reconnects after the transient failure cause: it drops the
// change stream and whatever of it was not yet processed, has the database
// reconnect, and restarts the stream at the cursor of the last processed
// commit. It retries, with backoff, until that succeeds or
// Options.RetryTimeout has passed since the outage began (the first failure
// since the capture last made progress), and logs each attempt as a warning.
//
// Events after the cursor are delivered again. The commits among them were
// never processed; the one transaction that may have been partly processed
// replays identically, so the first txnChanges of its changes are skipped
// (see handle). Nothing is emitted twice, and since the stream restarts at
// the cursor and reports only acknowledged positions to the database, no
// checkpoint passes anything the restarted stream does not deliver.
func (c *capture) recover(ctx context.Context, cause error) error {
	if c.outageBegin.IsZero() {
		c.outageBegin, c.outageCursor = time.Now(), c.cursor
	}
	if err := c.closeStream(ctx); err != nil {
		c.log.WithError(err).Debug("closing the failed replication stream")
	}
	c.batch, c.next = nil, 0
	c.fenceSeen = false
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.attempts++
		elapsed := time.Since(c.outageBegin)
		delay := c.retryDelay(c.attempts)
		if elapsed+delay > c.opts.RetryTimeout {
			return fmt.Errorf("gave up reconnecting after %d attempts over %s (the retry timeout is %s): %w",
				c.attempts-1, elapsed.Round(time.Millisecond), c.opts.RetryTimeout, cause)
		}
		c.log.WithFields(logrus.Fields{
			"attempt": c.attempts,
			"after":   elapsed.Round(time.Millisecond).String(),
			"retryIn": delay.Round(time.Millisecond).String(),
			"error":   cause.Error(),
		}).Warn("the connection to the database failed; reconnecting")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		err := c.reconnect(ctx)
		if err == nil {
			c.log.WithFields(logrus.Fields{
				"attempt": c.attempts,
				"outage":  time.Since(c.outageBegin).Round(time.Millisecond).String(),
				"cursor":  c.cursor,
			}).Info("reconnected; resuming the capture")
			return nil
		}
		if !IsTransient(err) {
			return err
		}
		cause = err
	}
}

// reconnect has the database reconnect and opens the change stream at the
// cursor, set to skip the changes of the open transaction already handled.
func (c *capture) reconnect(ctx context.Context) error {
	if err := c.db.Reconnect(ctx); err != nil {
		return err
	}
	stream, err := c.db.StartReplication(ctx, c.cursor, c.acked)
	if err != nil {
		return err
	}
	c.stream = stream
	c.replaySkip = c.txnChanges
	return nil
}

// closeStream closes the current change stream, if any. Close confirms the
// last acknowledged position, so it runs even when ctx is already
// cancelled, but briefly: the connection may be the one that failed.
func (c *capture) closeStream(ctx context.Context) error {
	if c.stream == nil {
		return nil
	}
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	err := c.stream.Close(closeCtx)
	c.stream = nil
	return err
}

// closeTimeout bounds how long closing a change stream may take.
const closeTimeout = 5 * time.Second

// progressed ends the current outage, if any: the capture moved on, past
// where the outage began. (A failure that recurs right after every
// reconnection, before anything moves, stays one outage and is bounded.)
func (c *capture) progressed() {
	c.outageBegin = time.Time{}
	c.attempts = 0
}
