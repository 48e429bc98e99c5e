package cli

import (
	"fmt"
	"runtime/debug"
)

// Version is the module version and VCS revision of this binary, from its
// build info: "v1.2.3 (rev 0123abcd, modified)" or "(devel) (rev ...)".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build info)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified, when string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		case "vcs.time":
			when = ", " + s.Value
		}
	}
	if rev == "" {
		return v + " (no VCS revision)"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return fmt.Sprintf("%s (rev %s%s%s, %s)", v, rev, when, modified, bi.GoVersion)
}
