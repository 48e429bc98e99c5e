package migrate

import (
	"fmt"
	"io"
	"strings"
)

// progress shows how far a long step is: a redrawn bar on a terminal, else
// one line per 10%. A nil *progress does nothing.
type progress struct {
	w        io.Writer
	terminal bool
	label    string
	total    int64
	shown    int64 // last percentage shown
}

func newProgress(w io.Writer, terminal bool, label string, total int64) *progress {
	if w == nil || total <= 0 {
		return nil
	}
	return &progress{w: w, terminal: terminal, label: label, total: total, shown: -1}
}

// at is update, shaped for byte offsets.
func (p *progress) at(off int64) { p.update(off) }

func (p *progress) update(done int64) {
	if p == nil {
		return
	}
	pct := min(done*100/p.total, 100)
	if p.terminal {
		if pct == p.shown {
			return
		}
		p.shown = pct
		bar := int(pct * 30 / 100)
		fmt.Fprintf(p.w, "\r%-18s [%s%s] %3d%%", p.label, strings.Repeat("=", bar), strings.Repeat(" ", 30-bar), pct)
		return
	}
	if step := pct / 10 * 10; step > p.shown && step > 0 {
		p.shown = step
		fmt.Fprintf(p.w, "%s: %d%%\n", p.label, step)
	}
}

func (p *progress) done() {
	if p == nil {
		return
	}
	p.update(p.total)
	if p.terminal {
		fmt.Fprintln(p.w)
	}
}
