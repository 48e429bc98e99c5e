package sweep

import (
	"errors"
	"testing"

	"populi-db/store"
)

// TestPassMarksFailedKinds: a kind whose work errors is marked Failed in
// the summary (the sweeper error metric counts it); the others are not, and
// the store closing is not a failure.
func TestPassMarksFailedKinds(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	boom := errors.New("disk on fire")
	for i := range b.sw.works {
		if b.sw.works[i].kind == RelayCap {
			b.sw.works[i].fn = func(int) (int, error) { return 0, boom }
		}
	}
	var seen Summary
	b.sw.OnPass = func(s Summary, _ error) { seen = s }
	sum, err := b.sw.Pass()
	if !errors.Is(err, boom) {
		t.Fatalf("Pass error %v, want the relay-cap failure", err)
	}
	for _, k := range Kinds {
		if got, want := sum.Counts[k].Failed, k == RelayCap; got != want {
			t.Errorf("%s: Failed = %v, want %v", k, got, want)
		}
	}
	if !seen.Counts[RelayCap].Failed {
		t.Error("OnPass did not get the failed kind")
	}

	if err := b.st.Close(); err != nil {
		t.Fatal(err)
	}
	sum, err = b.sw.Pass()
	if !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Pass on a closed store: %v", err)
	}
	for k, c := range sum.Counts {
		if c.Failed {
			t.Errorf("%s marked Failed because the store closed", k)
		}
	}
}
