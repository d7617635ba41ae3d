package document

import (
	"bytes"
	"errors"
	"strconv"
)

// A change of a transaction streamed while in progress is built before its
// commit is known: with a Source whose PrevCommitEnd, CommitLSN and
// CommitTimeMillis are zero. CompleteChange fills them in once it commits.

var (
	deferredLoc  = []byte(`,"loc":[0,`)
	deferredTail = []byte(`,0],"ts_ms":0,"txid":`)
)

var errNotDeferred = errors.New("a streamed change's document lacks its placeholder source position")

// CompleteChange appends doc, a change document begun with BeginChange and a
// Source of which only LSN and TxID were set, with the rest of src's
// position and time in place of the zeros.
func CompleteChange(dst, doc []byte, src *Source) ([]byte, error) {
	// The first match is _meta.source's own: the table's source fields
	// before it are JSON strings, in which a quote is always escaped.
	i := bytes.Index(doc, deferredLoc)
	if i < 0 {
		return nil, errNotDeferred
	}
	lsnAt := i + len(deferredLoc)
	j := bytes.IndexByte(doc[lsnAt:], ',')
	if j < 0 || !bytes.HasPrefix(doc[lsnAt+j:], deferredTail) {
		return nil, errNotDeferred
	}
	lsnEnd := lsnAt + j
	dst = append(dst, doc[:i+len(`,"loc":[`)]...)
	dst = strconv.AppendUint(dst, src.PrevCommitEnd, 10)
	dst = append(dst, ',')
	dst = append(dst, doc[lsnAt:lsnEnd]...)
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, src.CommitLSN, 10)
	dst = append(dst, `],"ts_ms":`...)
	dst = strconv.AppendInt(dst, src.CommitTimeMillis, 10)
	dst = append(dst, `,"txid":`...)
	return append(dst, doc[lsnEnd+len(deferredTail):]...), nil
}
