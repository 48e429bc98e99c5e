//go:build unix

package agent

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts cmd in its own process group and makes a stop send
// SIGTERM to the whole group (sh and what it started); cmd.WaitDelay later
// escalates to SIGKILL.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
}
