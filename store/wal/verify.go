package wal

import (
	"encoding/binary"
	"fmt"
)

// Position names a place in a log directory.
type Position struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
	Reason string `json:"reason,omitempty"`
}

// CorruptError is mid-log corruption: an invalid record (or segment header)
// followed by valid data, so the damaged record had been acknowledged. It
// wraps ErrCorrupt.
type CorruptError struct {
	Position          // the first invalid spot
	Evidence Position // the later valid record or header
}

func (e *CorruptError) Error() string {
	if e.Evidence.File == e.File && e.Evidence.Offset == e.Offset {
		return fmt.Sprintf("wal: corrupt log: %s at offset %d: %s: acknowledged writes are missing, refusing to start "+
			"(the operator override drops the log)", e.File, e.Offset, e.Reason)
	}
	return fmt.Sprintf("wal: corrupt log: %s at offset %d: %s, but valid data follows (%s at offset %d: %s); "+
		"acknowledged writes are damaged, refusing to start (the operator override cuts the log there and loses what follows)",
		e.File, e.Offset, e.Reason, e.Evidence.File, e.Evidence.Offset, e.Evidence.Reason)
}

func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Report is what Verify found: what Open would replay, cut or refuse.
type Report struct {
	Dir      string `json:"dir"`
	Segments int    `json:"segments"` // segment files the chain is read from
	Released int    `json:"released"` // older segment files, wholly at or before `after`, that Open recycles
	Spares   int    `json:"spares"`
	Records  int    `json:"records"` // valid records in the chain
	FirstSeq uint64 `json:"first_seq,omitempty"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
	Replay   int    `json:"replay"` // records with seq > after: what Open replays
	// Torn is the torn or corrupt tail Open cuts off (nothing valid follows it).
	Torn *Position `json:"torn,omitempty"`
	// Corrupt is mid-log corruption: Open refuses unless AllowCorrupt.
	Corrupt  *Position `json:"corrupt,omitempty"`
	Evidence *Position `json:"evidence,omitempty"`
}

// Err returns the error Open would refuse with, or nil.
func (r Report) Err() error {
	if r.Corrupt == nil {
		return nil
	}
	return &CorruptError{Position: *r.Corrupt, Evidence: *r.Evidence}
}

// Verify scans a log directory read-only (it never modifies or creates
// anything) and reports what Open(dir, after) would do. Damage is reported in
// the Report; the error is for failures to read.
func Verify(dir string, after uint64) (Report, error) {
	st, err := scan(OS(), dir, after)
	if err != nil {
		return Report{}, err
	}
	r := Report{
		Dir:      dir,
		Spares:   len(st.spares),
		Released: st.start,
		Segments: len(st.segs) - st.start,
		Records:  st.records,
		Replay:   st.replay,
	}
	if st.records > 0 {
		r.FirstSeq, r.LastSeq = st.first, st.last
	}
	if st.bad != nil {
		if st.evidence != nil {
			r.Corrupt, r.Evidence = st.bad, st.evidence
		} else {
			r.Torn = st.bad
		}
	}
	return r, nil
}

// scanState is the result of reading a log directory: the valid chain of
// records, where it ends, and what (if anything) is wrong after it.
type scanState struct {
	dirListing
	start   int // index in segs where the chain starts; segments before it are released
	records int
	replay  int    // records with seq > after
	first   uint64 // chain's first and last seq, when records > 0
	last    uint64
	next    uint64 // the seq the chain expects next
	endSeg  int    // index in segs of the segment holding the append position; -1: none
	endOff  int64  // the append position: just after the last valid record
	bad     *Position
	badSeg  int
	// evidence, when bad is set, is a later valid record or header with a seq
	// beyond the chain: bad is then mid-log corruption, else a torn tail.
	evidence *Position
}

// scan lists dir, walks the chain and, when it ends on an invalid record, looks
// ahead to tell a torn tail from mid-log corruption. It modifies nothing.
func scan(fsys FS, dir string, after uint64) (*scanState, error) {
	l, err := listDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	st := &scanState{dirListing: l}
	// The chain starts in the newest segment whose first seq is <= after+1:
	// everything before it is already in the store (and may survive a crash in
	// the middle of recycling, so it is not required to chain).
	for i := len(st.segs) - 1; i >= 0; i-- {
		if s := st.segs[i]; s.hdrErr == nil && s.hdr.first <= after+1 {
			st.start = i
			break
		}
	}
	if err := st.walk(fsys, after, nil); err != nil {
		return nil, err
	}
	if st.bad != nil {
		threshold := after
		if st.endSeg >= 0 {
			threshold = st.next - 1
		}
		from, off := st.badSeg, st.bad.Offset+recordAlign
		if st.bad.Offset == 0 {
			off = 0
		}
		st.evidence, err = st.lookahead(fsys, threshold, from, off)
		if err != nil {
			return nil, err
		}
	}
	return st, nil
}

// walk follows the chain of valid records from segs[start], calling visit (if
// not nil) for each with seq > after. It sets the chain fields and bad.
func (st *scanState) walk(fsys FS, after uint64, visit func(seq uint64, payload []byte) error) error {
	st.records, st.replay, st.first, st.last = 0, 0, 0, 0
	st.endSeg, st.endOff, st.bad, st.badSeg = -1, 0, nil, 0
	st.next = after + 1
	if len(st.segs) == 0 {
		return nil
	}
	s0 := st.segs[st.start]
	if s0.hdrErr != nil {
		st.bad, st.badSeg = &Position{File: s0.path, Reason: "segment header: " + s0.hdrErr.Error()}, st.start
		return nil
	}
	if s0.hdr.first > after+1 {
		st.bad, st.badSeg = &Position{File: s0.path, Reason: fmt.Sprintf(
			"the log starts at seq %d but the store holds only up to %d", s0.hdr.first, after)}, st.start
		return nil
	}
	expected := s0.hdr.first
	var buf []byte
	var err error
	var reason string // why the previous segment's chain stopped
	for i := st.start; i < len(st.segs); i++ {
		s := st.segs[i]
		if i > st.start {
			// The chain goes on only if this header continues it; else the
			// damage is where the previous segment's chain stopped.
			next := ""
			if s.hdrErr != nil {
				next = "segment header: " + s.hdrErr.Error()
			} else if s.hdr.first != expected {
				next = fmt.Sprintf("segment starts at seq %d, want %d", s.hdr.first, expected)
			}
			if next != "" {
				st.bad, st.badSeg = &Position{File: st.segs[st.endSeg].path, Offset: st.endOff,
					Reason: fmt.Sprintf("%s; next file %s: %s", reason, s.path, next)}, st.endSeg
				break
			}
		}
		if buf, err = readFile(fsys, s.path, buf); err != nil {
			return err
		}
		off := int64(segHeaderSize)
		st.endSeg, st.endOff = i, off
		for {
			var seq uint64
			var payload []byte
			var size int64
			seq, payload, size, reason = checkRecord(buf, off)
			if reason == "" && seq != expected {
				reason = fmt.Sprintf("record seq %d, want %d", seq, expected)
			}
			if reason != "" {
				break
			}
			if seq > after {
				st.replay++
				if visit != nil {
					if err := visit(seq, payload); err != nil {
						return err
					}
				}
			}
			if st.records == 0 {
				st.first = seq
			}
			st.records++
			st.last = seq
			expected++
			off += size
			st.endOff = off
		}
		// A segment ends where its chain stops; only the last one must end
		// cleanly (the next segment's header vouches for the others).
		if i == len(st.segs)-1 && !cleanEnd(buf, off) {
			st.bad, st.badSeg = &Position{File: s.path, Offset: off, Reason: reason}, i
		}
	}
	st.next = expected
	return nil
}

// lookahead searches, from segs[fromSeg] at offset fromOff on, for proof that
// data beyond seq threshold had been acknowledged: a valid record with a seq
// above it at any 8-byte aligned offset, or a valid segment header starting
// after threshold+1. Stale records (recycled segments) carry older seqs and
// never count.
func (st *scanState) lookahead(fsys FS, threshold uint64, fromSeg int, fromOff int64) (*Position, error) {
	var remain int64
	for j := fromSeg; j < len(st.segs); j++ {
		remain += st.segs[j].size
	}
	// Seqs are consecutive and a record takes >= 16 bytes: nothing genuine lies
	// further ahead than this, which keeps random bytes from costing a CRC.
	maxSeq := threshold + uint64(remain/recordHeaderSize) + 1
	var buf []byte
	var err error
	for j := fromSeg; j < len(st.segs); j++ {
		s := st.segs[j]
		off := int64(segHeaderSize)
		if j == fromSeg {
			if fromOff > off {
				off = align8(fromOff)
			}
		}
		if (j > fromSeg || fromOff == 0) && s.hdrErr == nil && s.hdr.first > threshold+1 && s.hdr.first <= maxSeq {
			return &Position{File: s.path, Reason: fmt.Sprintf("segment header says seq %d follows", s.hdr.first)}, nil
		}
		if buf, err = readFile(fsys, s.path, buf); err != nil {
			return nil, err
		}
		for ; off+recordHeaderSize <= int64(len(buf)); off += recordAlign {
			seq := binary.LittleEndian.Uint64(buf[off+8:])
			if seq <= threshold || seq > maxSeq {
				continue
			}
			if _, _, _, reason := checkRecord(buf, off); reason == "" {
				return &Position{File: s.path, Offset: off, Reason: fmt.Sprintf("valid record seq %d", seq)}, nil
			}
		}
	}
	return nil, nil
}

// ReadOnlyReplay calls replay for every valid record with seq > after, like
// Open, but modifies nothing (no tail is cut, nothing is recycled): for
// read-only tools, which apply the records in memory. Mid-log corruption is
// an error, as for Open without AllowCorrupt. A missing dir is an empty log.
func ReadOnlyReplay(dir string, after uint64, replay func(seq uint64, payload []byte) error) (Report, error) {
	rep, err := Verify(dir, after)
	if err != nil {
		return rep, err
	}
	if err := rep.Err(); err != nil {
		return rep, err
	}
	if rep.Replay == 0 {
		return rep, nil
	}
	st, err := scan(OS(), dir, after)
	if err != nil {
		return rep, err
	}
	return rep, st.walk(OS(), after, replay)
}
