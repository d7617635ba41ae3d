package polling

import (
	"bytes"
	"slices"
)

// identities is the set of document identities one full-refresh poll read:
// the JSON of each row's id columns (`"id":7,"region":"eu"`), which is the
// same bytes for the same ids in every poll, since both come from the same
// text output and conversion. The set lives in memory only, packed into one
// arena: about the size of the id values plus 16 bytes a row.
type identities struct {
	arena []byte
	spans []span
}

type span struct{ off, end int }

// add records an identity; sort must run before the set is queried.
func (s *identities) add(id []byte) {
	off := len(s.arena)
	s.arena = append(s.arena, id...)
	s.spans = append(s.spans, span{off, len(s.arena)})
}

func (s *identities) at(i int) []byte { return s.arena[s.spans[i].off:s.spans[i].end] }

// sort orders the set and drops duplicates, returning how many there were:
// rows of one poll that share their ids.
func (s *identities) sort() (duplicates int) {
	slices.SortFunc(s.spans, func(a, b span) int {
		return bytes.Compare(s.arena[a.off:a.end], s.arena[b.off:b.end])
	})
	n := len(s.spans)
	s.spans = slices.CompactFunc(s.spans, func(a, b span) bool {
		return bytes.Equal(s.arena[a.off:a.end], s.arena[b.off:b.end])
	})
	return n - len(s.spans)
}

// contains reports whether the sorted set holds id.
func (s *identities) contains(id []byte) bool {
	_, found := slices.BinarySearchFunc(s.spans, id, func(sp span, id []byte) int {
		return bytes.Compare(s.arena[sp.off:sp.end], id)
	})
	return found
}

// missingFrom calls fn for each identity of the sorted set s that the
// sorted set cur lacks, in order.
func (s *identities) missingFrom(cur *identities, fn func(id []byte) error) error {
	j := 0
	for i := range s.spans {
		id := s.at(i)
		for j < len(cur.spans) && bytes.Compare(cur.at(j), id) < 0 {
			j++
		}
		if j < len(cur.spans) && bytes.Equal(cur.at(j), id) {
			continue
		}
		if err := fn(id); err != nil {
			return err
		}
	}
	return nil
}

func (s *identities) len() int { return len(s.spans) }
