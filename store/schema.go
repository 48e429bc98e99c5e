package store

import (
	"crypto/sha256"
	"encoding/binary"
)

// SchemaVersion is written to meta/schema_version. Open upgrades an older
// file through the migrations in upgrade.go and refuses a newer one.
const SchemaVersion = 3

// Every bucket, in one place. Keys are byte strings; ids are 8-byte
// big-endian so byte order is numeric order. "recv" below is a receiver
// agent id (decimal digits, so 0x00 is a safe separator); node ids are
// arbitrary bytes and are length-prefixed where they lead a compound key.
var (
	bMeta = []byte("meta") // meta keys below → value

	bNodes       = []byte("nodes")                 // node id → seq(8) ‖ NodeRecord JSON
	bNodesOrder  = []byte("nodes_order")           // seq(8) → node id (list order = first insertion)
	bTombstones  = []byte("quarantine_tombstones") // node id → "1" (SPEC 16.9)
	bMaintByTime = []byte("maint_deadline")        // deadline(8) ‖ node id → nil (timed drains, for the sweeper)

	bRows = []byte("a2a_rows") // id(8) → StoredMessage (rowcodec.go; JSON before schema 3): the mailbox's only durable row state
	bIdem = []byte("a2a_idem") // dedupe key → id(8) (SPEC 6.3, 16.3)

	// Derived mailbox indexes, kept in memory and rebuilt from bRows at open
	// (memidx.go); same key layouts as if they were buckets.
	bByReceiver = []byte("a2a_by_receiver") // recv 0x00 id(8) → nil: ready, leased and delayed rows (listing)
	bReady      = []byte("a2a_ready")       // recv 0x00 ^prio(1) id(8) → nil: claim order (priority desc, id asc)
	bWait       = []byte("a2a_wait")        // recv 0x00 T(8) id(8) → nil: leased (T = lease expiry) and delayed (T = due) rows
	bWaitByTime = []byte("a2a_wait_time")   // T(8) id(8) → nil: same rows, global, for the sweeper
	bHeld       = []byte("a2a_held")        // len(2) holder recv 0x00 ^prio(1) id(8) → nil: leased rows by holder (same-holder re-claim)
	bDead       = []byte("a2a_dead")        // recv 0x00 id(8) → nil: dead letters (listing)
	bDeadIDs    = []byte("a2a_dead_ids")    // id(8) → nil: dead letters, oldest first (cap eviction)
	bAcked      = []byte("a2a_acked")       // id(8) → nil: acknowledged rows, oldest first (cap eviction)
	bCounts     = []byte("a2a_counts")      // state name → count(8); "k:"+task_kind and "p:"+prio → pending count
	bRecvReady  = []byte("a2a_recv_ready")  // recv → ready count(8)

	bExec      = []byte("exec_leases") // lease id → seq(8) ‖ ExecLease JSON
	bExecOrder = []byte("exec_order")  // seq(8) → lease id (list order)
	bExecScope = []byte("exec_scope")  // scope_key → lease id
	bExecByExp = []byte("exec_exp")    // expiry(8) ‖ lease id → nil

	bJTI        = []byte("jwt_jti")   // jti → purge time, Unix seconds(8)
	bJTIByPurge = []byte("jwt_purge") // purge(8) ‖ jti → nil
	bBootstrap  = []byte("bootstrap") // hex(blake3(token)) → bootstrapState JSON

	bFedDir   = []byte("fed_dir")   // seq(8) → MeshDirectoryEntry canonical JSON (directory order = first announcement)
	bFedScope = []byte("fed_scope") // scope_id → seq(8)
)

var allBuckets = [][]byte{
	bMeta, bNodes, bNodesOrder, bTombstones, bMaintByTime,
	bRows, bIdem, // the mailbox's other indexes are derived, in memory (memidx.go)
	bExec, bExecOrder, bExecScope, bExecByExp,
	bJTI, bJTIByPurge, bBootstrap,
	bFedDir, bFedScope,
}

// Meta keys.
var (
	mSchemaVersion = []byte("schema_version")
	mNextMessageID = []byte("next_message_id")  // reserved high-water mark (seq.go); never reused
	mNextLeaseID   = []byte("next_lease_id")    // exec lease ids
	mNextToken     = []byte("next_lease_token") // reserved like next_message_id
	mNodeSeq       = []byte("node_seq")
	mExecSeq       = []byte("exec_seq")
	mJTICount      = []byte("jti_count")
	mAppliedLogSeq = []byte("applied_log_seq") // last write-ahead log record folded into this file (commit.go; schema 2)
	mFedSeq        = []byte("fed_seq")         // federation directory order
	mFedCount      = []byte("fed_count")       // federation directory entries
)

// Counter keys in bCounts: one per row state.
var (
	cReady   = []byte("ready")
	cLeased  = []byte("leased")
	cDelayed = []byte("delayed")
	cDead    = []byte("dead")
	cAcked   = []byte("acked")
)

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// cat concatenates key parts into a fresh slice.
func cat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var sep = []byte{0}

// maxKeyPart bounds a caller-supplied string used inside a bbolt key (bbolt
// refuses keys over 32 KiB). Longer values are replaced by 0xff ‖ SHA-256;
// 0xff never starts a digit string or valid UTF-8, so the forms cannot meet.
const maxKeyPart = 512

func boundedKey(s string) []byte {
	if len(s) <= maxKeyPart {
		return []byte(s)
	}
	h := sha256.Sum256([]byte(s))
	return cat([]byte{0xff}, h[:])
}

func recvPrefix(recv string) []byte { return cat(boundedKey(recv), sep) }

func prioInv(p uint8) []byte { return []byte{^p} }

func holderPrefix(holder, recv string) []byte {
	h := boundedKey(holder)
	return cat([]byte{byte(len(h) >> 8), byte(len(h))}, h, recvPrefix(recv))
}
