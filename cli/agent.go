package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/agent"
	"populi-db/client"
	"populi-db/internal/clock"
	"populi-db/probe"
)

var agentEnvDocs = []envDoc{
	{agent.EnvControlURL, "unset", "control plane URL (--control-url wins); host:port gets http://, 0.0.0.0/:: are refused"},
	{agent.EnvControlAddr, "unset", "fallback control plane URL"},
	{agent.EnvWorkerToken + ", " + agent.EnvMeshToken + ", " + agent.EnvAdminToken, "unset", "bearer, first non-blank in this order"},
	{agent.EnvBootstrapToken, "unset", "one-time token exchanged (once) for the mesh token, kept in the state dir (0600)"},
	{agent.EnvNodeID, "generated", "node id; unset = local-<hex> generated once and kept in the state dir"},
	{agent.EnvStateDir, agent.StateDirDefault, "state directory (node id, exchanged token), mode 0700"},
	{agent.EnvHeartbeatSecs, "30", "heartbeat interval in seconds; 0 = join only"},
	{agent.EnvHTTPTimeoutMs, "15000", "per-request timeout; values below 500 are ignored"},
	{agent.EnvHTTPJoin, "on", "0/false: no join/heartbeat (registry file only)"},
	{agent.EnvScopeID + ", " + agent.EnvVisibility, "unset", "scope_id and visibility of the record"},
	{agent.EnvDonationPolicy, "unset", "donation_policy of the record (JSON; invalid = ignored with a warning)"},
	{"VOX_MESH_LABELS", "unset", "comma-separated capabilities.labels"},
	{"VOX_MESH_ADVERTISE_GPU/_VULKAN/_WEBGPU/_NPU, VOX_MESH_DEVICE_CLASS", "off", "Layer C advertisement flags (never GPU counts)"},
	{agent.EnvReadinessProbeOff, "off", "1/true: leave the gpu_readiness_* fields out"},
	{agent.EnvEnabled + ", " + agent.EnvRegistryPath, "off, " + agent.RegistryPathDefault, "1/true: also publish the record to the local registry file"},
}

func envTable(docs []envDoc) string {
	var b strings.Builder
	for _, d := range docs {
		fmt.Fprintf(&b, "  %s  (default %s)\n      %s\n", d.name, d.def, d.meaning)
	}
	return b.String()
}

func agentCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "agent",
		Usage: "run a worker node: join, heartbeat (GPU probe included), leave on SIGTERM; optionally claim and run jobs",
		Description: `Builds this machine's NodeRecord from the environment and the NVML probe (cached
--probe-ttl), joins the control plane and heartbeats every VOX_MESH_HTTP_HEARTBEAT_SECS
with a fresh record. Transport errors, 429 and 5xx back off exponentially with full
jitter (capped at 5 minutes, reset on success); 401/403 are logged and retried at the
normal interval. A restarted control plane, or one that lost the node, gets it back
on the next heartbeat. SIGTERM/SIGINT: stop the work loop, POST leave, exit 0.

With --claim RECEIVER --exec CMD the agent is also a worker for that A2A mailbox:
it long-polls a claim, runs CMD under sh -c with the payload on stdin (and
POPULI_MESSAGE_ID, POPULI_MESSAGE_TYPE, POPULI_SENDER_AGENT_ID,
POPULI_RECEIVER_AGENT_ID, POPULI_DELIVERY_COUNT, POPULI_NODE_ID in its environment),
renews the lease while CMD runs, acks on exit 0 and nacks with backoff otherwise. A
lease that another node took over is never acked: CMD is stopped and the row left
to its new holder.

Environment:
` + envTable(agentEnvDocs),
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "control-url", Usage: "control plane URL (overrides $" + agent.EnvControlURL + ")"},
			&ucli.StringFlag{Name: "state-dir", DefaultText: "$" + agent.EnvStateDir + ", else " + agent.StateDirDefault, Usage: "agent state directory"},
			&ucli.StringFlag{Name: "listen-addr", Usage: "listen_addr to advertise in the record"},
			&ucli.DurationFlag{Name: "probe-ttl", Value: agent.ProbeTTLDefault, Usage: "reuse a GPU probe this long between heartbeats"},
			&ucli.StringFlag{Name: "claim", Usage: "A2A receiver agent id to take work for (needs --exec)"},
			&ucli.StringFlag{Name: "exec", Usage: "command run under sh -c for each claimed row, payload on stdin"},
			&ucli.DurationFlag{Name: "claim-wait", Value: agent.ClaimWaitDefault, Usage: "long-poll wait of one claim (the server caps it at 30s)"},
			&ucli.DurationFlag{Name: "renew-every", Usage: "lease renew period while CMD runs (default: a third of the lease left at claim)"},
			&ucli.DurationFlag{Name: "kill-grace", Value: agent.KillGraceDefault, Usage: "SIGTERM-to-SIGKILL grace when CMD must stop"},
			&ucli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error (logs go to stderr)"},
		},
		Action: func(c *ucli.Context) error {
			return runAgentCommand(c.Context, agentOptions{
				ControlURL: c.String("control-url"),
				StateDir:   c.String("state-dir"),
				ListenAddr: c.String("listen-addr"),
				ProbeTTL:   c.Duration("probe-ttl"),
				Claim:      c.String("claim"),
				Exec:       c.String("exec"),
				ClaimWait:  c.Duration("claim-wait"),
				RenewEvery: c.Duration("renew-every"),
				KillGrace:  c.Duration("kill-grace"),
				LogLevel:   c.String("log-level"),
				Stdout:     c.App.Writer,
				Stderr:     c.App.ErrWriter,
				Lookup:     osLookup(),
			})
		},
	}
}

type agentOptions struct {
	ControlURL, StateDir, ListenAddr, Claim, Exec, LogLevel string
	ProbeTTL, ClaimWait, RenewEvery, KillGrace              time.Duration
	Stdout, Stderr                                          io.Writer
	Lookup                                                  LookupFunc
}

func getenvOf(lookup LookupFunc) func(string) string {
	return func(k string) string { v, _ := lookup(k); return v }
}

// agentVersion is the record's version: "populi-db " + the --version text.
func agentVersion() string { return "populi-db " + Version() }

// expandHome expands a leading "~/" with $HOME, else $USERPROFILE, else ".".
func expandHome(p string, getenv func(string) string) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home := strings.TrimSpace(getenv("HOME"))
	if home == "" {
		home = strings.TrimSpace(getenv("USERPROFILE"))
	}
	if home == "" {
		home = "."
	}
	return filepath.Join(home, strings.TrimPrefix(p[1:], "/"))
}

// stateDirFor resolves --state-dir, $VOX_MESH_AGENT_STATE_DIR, the default.
func stateDirFor(flag string, env agent.Env, getenv func(string) string) string {
	d := strings.TrimSpace(flag)
	if d == "" {
		d = env.StateDir
	}
	if d == "" {
		d = agent.StateDirDefault
	}
	return expandHome(d, getenv)
}

func runAgentCommand(ctx context.Context, o agentOptions) error {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	level, err := parseLevel(o.LogLevel)
	if err != nil {
		return &usageError{err}
	}
	log := slog.New(slog.NewTextHandler(o.Stderr, &slog.HandlerOptions{Level: level}))
	getenv := getenvOf(o.Lookup)
	env := agent.ParseEnv(getenv)
	if strings.TrimSpace(o.ControlURL) != "" {
		if env.ControlURL = agent.NormalizeControlURL(o.ControlURL); env.ControlURL == "" {
			return usagef("invalid or bind-all control URL: %s (pass a reachable --control-url such as http://127.0.0.1:9847)", o.ControlURL)
		}
	}
	if (o.Claim == "") != (o.Exec == "") {
		return usagef("--claim and --exec go together (e.g. --claim 7 --exec ./handle-job.sh)")
	}
	switch {
	case !env.JoinEnabled && !env.PublishRegistry:
		return usagef("nothing to do: %s is off and %s is not set", agent.EnvHTTPJoin, agent.EnvEnabled)
	case !env.JoinEnabled && o.Claim != "":
		return usagef("--claim needs the control plane, but %s is off", agent.EnvHTTPJoin)
	case env.JoinEnabled && env.ControlURL == "":
		return usagef("no control plane URL: pass --control-url or set %s (or %s)", agent.EnvControlURL, agent.EnvControlAddr)
	}
	for _, w := range env.Warnings {
		log.Warn(w)
	}

	st, err := agent.OpenState(stateDirFor(o.StateDir, env, getenv))
	if err != nil {
		return err
	}
	nodeID := env.NodeID
	if nodeID == "" {
		if nodeID, err = st.NodeID(func() string { return agent.NewNodeID(time.Now()) }); err != nil {
			return err
		}
	}
	recEnv, warns := agent.ParseRecordEnv(getenv)
	for _, w := range warns {
		log.Warn(w)
	}

	var cp agent.ControlPlane
	if env.JoinEnabled {
		bo := agent.Backoff{Base: time.Second, Cap: agent.BackoffCapDefault, Floor: 250 * time.Millisecond}
		pub, err := client.New(env.ControlURL, client.WithTimeout(env.Timeout))
		if err != nil {
			return err
		}
		creds, src, err := agent.ResolveCredentials(ctx, env, st, pub, bo, clock.Real{}, log)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while waiting for the control plane
			}
			return err
		}
		if src == agent.TokenNone {
			log.Warn("no bearer configured: this only works against an open-mode control plane (set " + agent.EnvWorkerToken + ")")
		}
		if recEnv.ScopeID == "" && creds.ScopeID != nil {
			recEnv.ScopeID = strings.TrimSpace(*creds.ScopeID)
		}
		opts := []client.Option{client.WithTimeout(env.Timeout)}
		if src == agent.TokenFromEnv {
			opts = append(opts, client.WithTokens(client.TokensFromEnv(client.LookupFunc(o.Lookup))))
		} else {
			opts = append(opts, client.WithBearer(creds.MeshToken))
		}
		c, err := client.New(env.ControlURL, opts...)
		if err != nil {
			return err
		}
		defer c.Close()
		cp = c
		log.Info("control plane", "url", env.ControlURL, "token_source", src)
	}

	registry := ""
	if env.PublishRegistry {
		registry = env.RegistryPath
		if registry == "" {
			registry = expandHome(agent.RegistryPathDefault, getenv)
		}
	}
	var work *agent.WorkConfig
	if o.Claim != "" {
		work = &agent.WorkConfig{
			Receiver: o.Claim, Command: o.Exec, ClaimWait: o.ClaimWait, RenewEvery: o.RenewEvery,
			KillGrace: o.KillGrace, Stdout: o.Stderr, Stderr: o.Stderr,
		}
	}
	b := &agent.Builder{
		NodeID: nodeID, Version: agentVersion(), ListenAddr: strings.TrimSpace(o.ListenAddr),
		Env: recEnv, Getenv: getenv, NVML: probe.NewNVML(), ProbeTTL: o.ProbeTTL,
	}
	fmt.Fprintf(o.Stdout, "populi-db agent: node %s, control plane %s\n", nodeID, orNone(env.ControlURL))
	return agent.New(agent.Config{
		CP: cp, Builder: b, Interval: env.Interval, Timeout: env.Timeout,
		RegistryPath: registry, Work: work, Log: log,
	}).Run(ctx)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
