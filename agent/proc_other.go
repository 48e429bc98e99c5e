//go:build !unix

package agent

import "os/exec"

// setProcessGroup keeps exec's default stop (kill the process) where there
// are no process groups.
func setProcessGroup(*exec.Cmd) {}
