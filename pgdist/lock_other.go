//go:build !unix

package pgdist

import "context"

// lockIsExclusive says that lockDir does not keep other processes out: where
// there is no flock, concurrent fetches each download, and the first to
// rename its build into place wins (see Fetcher.install).
const lockIsExclusive = false

func lockDir(context.Context, string) (unlock func(), err error) { return func() {}, nil }
