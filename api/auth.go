package api

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"

	"populi-db/wire"
)

const bearerPrefix = "Bearer " // exact: capital B, one space (SPEC 3.3)

// withAuth authenticates every request except the unauthenticated paths,
// before the router and before any body is read (SPEC 2.1 step 2): unknown
// paths are authenticated too, so 401 beats 404. The role goes into the
// request context for the handler's role check.
func (s *Server) withAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == pathHealth, p == pathReady, p == pathOpenAPI, p == pathBootstrap,
			p == pathMetrics && s.cfg.MetricsOpen:
			next.ServeHTTP(w, r)
			return
		}
		role, err := s.authenticate(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxRole, role)))
	})
}

// authenticate resolves the caller's role (SPEC 3.2-3.4). Bearer values are
// never logged.
func (s *Server) authenticate(r *http.Request) (Role, error) {
	if s.open {
		return RoleOpen, nil // SPEC 3.2: any Authorization header is ignored
	}
	tok, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		// The node-signature scheme (3.7) is off by default (16.13).
		return RoleNone, wire.ErrUnauthorized
	}
	t := s.cfg.Tokens
	for _, c := range []struct {
		secret string
		role   Role
	}{{t.Mesh, RoleMesh}, {t.Worker, RoleWorker}, {t.Submitter, RoleSubmitter}, {t.Admin, RoleAdmin}} {
		if c.secret != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(c.secret)) == 1 {
			return c.role, nil
		}
	}
	if s.cfg.JWT == nil {
		return RoleNone, wire.ErrUnauthorized
	}
	role, err := s.cfg.JWT.VerifyJWT(tok)
	if err != nil {
		// A *wire.Error is an answer (401); anything else is a replay-guard
		// failure that writeError logs and answers 500.
		return RoleNone, err
	}
	switch role {
	case RoleMesh, RoleWorker, RoleSubmitter, RoleAdmin:
		return role, nil
	}
	return RoleNone, wire.ErrUnauthorized
}

// bearer extracts the token of an `Authorization: Bearer <token>` header:
// visible ASCII only, exact prefix, remainder trimmed and non-empty.
func bearer(h string) (string, bool) {
	for i := 0; i < len(h); i++ {
		if c := h[i]; (c < 0x20 || c > 0x7e) && c != '\t' {
			return "", false
		}
	}
	if !strings.HasPrefix(h, bearerPrefix) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(bearerPrefix):])
	return tok, tok != ""
}

// authorize is the handler-side role check (SPEC 3.5): after body decoding,
// before validation. A denied caller gets the route's 403 text.
func authorize(r *http.Request, rt *route) error {
	role, _ := r.Context().Value(ctxRole).(Role)
	if allowed(rt.class, role) {
		return nil
	}
	return rt.denied
}

func allowed(c roleClass, role Role) bool {
	switch role {
	case RoleOpen, RoleMesh, RoleAdmin:
		return true
	case RoleWorker:
		return c == classWorker
	case RoleSubmitter:
		return c == classDeliver
	}
	return c == classPublic
}
