//go:build unix

package pgdist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockIsExclusive says that lockDir keeps other processes out.
const lockIsExclusive = true

// lockPollInterval is how often a process waiting for another's fetch checks
// whether it is done; a fetch takes seconds.
const lockPollInterval = 50 * time.Millisecond

// lockDir takes an exclusive flock on path, creating it, waiting while
// another process holds it (until ctx is done). The lock is the kernel's,
// so it is released even if its holder is killed.
func lockDir(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the lock file: %w", err)
	}
	poll := time.NewTicker(lockPollInterval)
	defer poll.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil //nolint:errcheck // closing releases the lock, and the lock is all the file is for
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close() //nolint:errcheck // closing on the way out; the failure being returned or the end of the connection is what matters
			return nil, fmt.Errorf("waiting for another process fetching a PostgreSQL build (it holds %s): %w", path, ctx.Err())
		case <-poll.C:
		}
	}
}
