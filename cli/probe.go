package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	ucli "github.com/urfave/cli/v2"

	"populi-db/agent"
	"populi-db/probe"
	"populi-db/wire"
)

func probeCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "probe",
		Usage: "print the NodeRecord this machine would send and per-GPU diagnostics (NVML)",
		Description: "Builds the record exactly as `populi-db agent` does (environment, advertisement flags,\n" +
			"NVML probe) and prints it with per-device telemetry: name, VRAM total/free, utilisation,\n" +
			"temperature, power. Without a usable NVML it says why, and the record carries no GPU\n" +
			"counts: nothing is invented. Nothing is sent anywhere and nothing is written.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "state-dir", DefaultText: "$" + agent.EnvStateDir + ", else " + agent.StateDirDefault, Usage: "agent state directory (read for the node id, never created)"},
			&ucli.StringFlag{Name: "listen-addr", Usage: "listen_addr to show in the record"},
			outputFlag,
		},
		Action: func(c *ucli.Context) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return &usageError{err}
			}
			getenv := getenvOf(osLookup())
			env := agent.ParseEnv(getenv)
			recEnv, warns := agent.ParseRecordEnv(getenv)
			nodeID := env.NodeID
			if nodeID == "" {
				nodeID = peekNodeID(stateDirFor(c.String("state-dir"), env, getenv))
			}
			n := probe.NewNVML()
			b := &agent.Builder{NodeID: nodeID, Version: agentVersion(), ListenAddr: c.String("listen-addr"),
				Env: recEnv, Getenv: getenv, NVML: n}
			rec := b.Build()
			return writeProbe(c.App.Writer, rec, probe.Diagnose(n), warns, asJSON)
		},
	}
}

// peekNodeID reads the agent's saved node id without creating anything;
// "" when there is none yet.
func peekNodeID(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "node-id"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// probeReport is `probe -o json`.
type probeReport struct {
	Record   wire.NodeRecord   `json:"record"`
	NVML     probe.Diagnostics `json:"nvml"`
	Warnings []string          `json:"warnings,omitempty"`
}

func writeProbe(w io.Writer, rec wire.NodeRecord, d probe.Diagnostics, warns []string, asJSON bool) error {
	if asJSON {
		return printJSON(w, probeReport{Record: rec, NVML: d, Warnings: warns})
	}
	for _, x := range warns {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
	if rec.ID == "" {
		fmt.Fprintf(w, "note: no node id yet (%s unset and no agent state): `populi-db agent` generates one on first start\n", agent.EnvNodeID)
	}
	fmt.Fprintln(w, "NodeRecord this machine would send:")
	if err := printJSON(w, rec); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if !d.NVMLAvailable {
		fmt.Fprintf(w, "GPU: none reported. %s\n", d.Reason)
		fmt.Fprintln(w, "The record carries no gpu_total/healthy/allocatable counts, inventory source, truth layer or driver versions; nothing is invented.")
		return nil
	}
	fmt.Fprintf(w, "GPU: NVML driver %s, CUDA %s, %d device(s)\n", orDash(d.DriverVersion), orDash(d.CUDAVersion), d.DeviceCount)
	if len(d.Devices) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tNAME\tVRAM TOTAL\tVRAM FREE\tUTIL\tTEMP\tPOWER\tERRORS")
	for _, dv := range d.Devices {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dv.Index, orDash(dv.Name),
			fmtOpt(dv.VRAMTotalMiB, "%d MiB"), fmtOpt(dv.VRAMFreeMiB, "%d MiB"), fmtOpt(dv.UtilizationPct, "%d%%"),
			fmtOpt(dv.TemperatureC, "%d C"), fmtOpt(dv.PowerW, "%.1f W"), orDash(strings.Join(dv.Errors, "; ")))
	}
	return tw.Flush()
}

func fmtOpt[T any](p *T, format string) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf(format, *p)
}
