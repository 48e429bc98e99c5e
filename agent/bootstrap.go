package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"populi-db/internal/clock"
)

// Credentials sources reported by ResolveCredentials.
const (
	TokenFromEnv       = "environment"
	TokenFromState     = "state directory"
	TokenFromBootstrap = "bootstrap exchange"
	TokenNone          = "none"
)

// ResolveCredentials picks the worker-plane bearer (SPEC 15.2, 16.11, 4):
//
//  1. a token from the environment (worker → mesh → admin) wins;
//  2. else the mesh token a previous bootstrap exchange saved in st;
//  3. else, with a bootstrap token, exchange it once (no bearer), save the
//     result in st with mode 0600 and use it. Transport failures, 429 and
//     5xx are retried with bo; any other answer (401 invalid, 404 disabled,
//     410 consumed or expired) is an error that says what to do.
//
// The scope is the exchange's scope_id when VOX_MESH_SCOPE_ID is not set
// (nil otherwise or when none was handed out).
func ResolveCredentials(ctx context.Context, env Env, st *State, ex Exchanger, bo Backoff, clk clock.Clock, log *slog.Logger) (Credentials, string, error) {
	if env.Token != "" {
		return Credentials{MeshToken: env.Token}, TokenFromEnv, nil
	}
	if st != nil {
		c, ok, err := st.Credentials()
		if err != nil {
			return Credentials{}, "", err
		}
		if ok {
			return c, TokenFromState, nil
		}
	}
	if env.BootstrapToken == "" {
		return Credentials{}, TokenNone, nil
	}
	if st == nil || ex == nil {
		return Credentials{}, "", fmt.Errorf("a bootstrap token needs a state directory and a control URL")
	}
	if clk == nil {
		clk = clock.Real{}
	}
	if env.Timeout <= 0 {
		env.Timeout = HTTPTimeoutDefault
	}
	for failures := 0; ; {
		// Not cancelled by ctx: a token the server consumed must be saved,
		// or it is lost for good.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), env.Timeout)
		resp, err := ex.BootstrapExchange(cctx, env.BootstrapToken)
		cancel()
		if err == nil {
			c := Credentials{MeshToken: strings.TrimSpace(resp.MeshToken), ScopeID: resp.ScopeID}
			if c.MeshToken == "" {
				return Credentials{}, "", fmt.Errorf("bootstrap exchange returned an empty mesh token")
			}
			if err := st.SaveCredentials(c); err != nil {
				return Credentials{}, "", err
			}
			log.Info("bootstrap token exchanged; mesh token saved", "dir", st.Dir)
			return c, TokenFromBootstrap, nil
		}
		if ctx.Err() != nil {
			return Credentials{}, "", ctx.Err()
		}
		if !Retryable(err) {
			return Credentials{}, "", fmt.Errorf("bootstrap exchange refused (%w): a bootstrap token works once; "+
				"ask the operator for a fresh one, or set %s", err, EnvWorkerToken)
		}
		failures++
		d := bo.Delay(failures)
		log.Info("bootstrap exchange failed; backing off", "err", err, "retry_in", d)
		select {
		case <-clk.After(d):
		case <-ctx.Done():
			return Credentials{}, "", ctx.Err()
		}
	}
}
