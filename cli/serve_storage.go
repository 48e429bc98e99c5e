package cli

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/store"
)

// Storage flags of serve: the write-ahead log and the background bbolt
// commits (store/commit.go explains both).
func storageFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.DurationFlag{Name: "commit-interval", Value: store.CommitIntervalDefault, Usage: "how often acknowledged writes are folded from the write-ahead log into the db file (bounds replay time and log size, not durability)"},
		&ucli.Int64Flag{Name: "wal-segment-size", Value: 64 << 20, Usage: "bytes per write-ahead log segment file (preallocated; directory <db>-wal)"},
		&ucli.BoolFlag{Name: "commit-pipeline", Usage: "build the next group-commit batch while the previous one's fsync runs (a second goroutine; slower on 2 cores, may pay on more)"},
		&ucli.BoolFlag{Name: "allow-corrupt-log", Usage: "start even when a write-ahead log record that was acknowledged is damaged: the log is cut there and the writes after it are LOST (run `populi-db check` first)"},
	}
}

type storageOptions struct {
	CommitInterval  time.Duration
	SegmentSize     int64
	AllowCorruptLog bool
	Pipeline        bool
}

func storageOptionsFrom(c *ucli.Context) storageOptions {
	return storageOptions{
		CommitInterval:  c.Duration("commit-interval"),
		SegmentSize:     c.Int64("wal-segment-size"),
		AllowCorruptLog: c.Bool("allow-corrupt-log"),
		Pipeline:        c.Bool("commit-pipeline"),
	}
}

// EnvCrashPoints is for the crash harness only: "name=probability,…" makes
// the server SIGKILL itself at those commit-path windows (store.Config
// CrashPoint), shortly after reaching one, so the kill lands inside it.
const EnvCrashPoints = "POPULI_TEST_CRASHPOINTS"

// EnvCrashPointsArmedBy names a file: crash points fire only while it
// exists, so the harness can check a restarted server before arming them.
const EnvCrashPointsArmedBy = "POPULI_TEST_CRASHPOINTS_ARMED_BY"

func (o storageOptions) apply(cfg *store.Config, lookup LookupFunc) error {
	if o.CommitInterval < 0 {
		return fmt.Errorf("--commit-interval must not be negative (got %s)", o.CommitInterval)
	}
	if o.SegmentSize != 0 && o.SegmentSize < 64<<10 {
		return fmt.Errorf("--wal-segment-size must be at least 65536 bytes (got %d)", o.SegmentSize)
	}
	cfg.CommitInterval, cfg.LogSegmentSize, cfg.AllowCorruptLog = o.CommitInterval, o.SegmentSize, o.AllowCorruptLog
	cfg.PipelineCommits = o.Pipeline
	spec, _ := lookup(EnvCrashPoints)
	if strings.TrimSpace(spec) == "" {
		return nil
	}
	odds := map[string]float64{}
	for _, part := range strings.Split(spec, ",") {
		name, p, ok := strings.Cut(strings.TrimSpace(part), "=")
		f, err := strconv.ParseFloat(p, 64)
		if !ok || err != nil || f < 0 || f > 1 {
			return fmt.Errorf("%s: want name=probability,… (got %q)", EnvCrashPoints, part)
		}
		odds[name] = f
	}
	armFile, _ := lookup(EnvCrashPointsArmedBy)
	cfg.CrashPoint = func(name string) {
		if armFile != "" {
			if _, err := os.Stat(armFile); err != nil {
				return
			}
		}
		if p, ok := odds[name]; ok && rand.Float64() < p {
			// Kill from the side after a short random delay, so the
			// process dies somewhere inside the window, not at its start.
			go func() {
				time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}()
		}
	}
	return nil
}
