// Package security holds populi-db's authentication pieces that the HTTP
// layer plugs in through the seams of api/config.go: HS256 JWT bearers with
// the durable replay guard (SPEC 3.4, 16.4), result attestation (SPEC 6.8),
// per-client-IP rate limiting (SPEC 16.14), and the token and JWT minting
// helpers the CLI uses.
//
// Nothing in this package puts a token, JWT, secret or key into an error, a
// log line or a panic message.
package security

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"populi-db/api"
	"populi-db/internal/clock"
	"populi-db/store"
	"populi-db/wire"
)

// JWTLeeway is the grace after exp during which a JWT still verifies
// (SPEC 3.4 step 4). The replay guard keeps a jti at least this long past
// its exp (store.ConsumeJTI).
const JWTLeeway = store.JWTLeeway

// MaxJWTBytes bounds the bearer the JWT path will parse. Real tokens are a
// few hundred bytes; anything longer is refused before any decoding.
const MaxJWTBytes = 16 << 10

// roleNames maps the trimmed, lower-cased role claim to its role.
var roleNames = map[string]api.Role{
	"mesh":      api.RoleMesh,
	"worker":    api.RoleWorker,
	"submitter": api.RoleSubmitter,
	"admin":     api.RoleAdmin,
}

type jwtVerifier struct {
	secret  []byte
	st      *store.Store
	clk     clock.Clock
	parser  *jwt.Parser
	log     *slog.Logger
	refused func(reason string)
}

// JWTOption adjusts NewJWTVerifier.
type JWTOption func(*jwtVerifier)

// WithJWTLogger makes the verifier log (a replay-guard failure, never a
// token) through log instead of slog.Default().
func WithJWTLogger(log *slog.Logger) JWTOption {
	return func(v *jwtVerifier) {
		if log != nil {
			v.log = log
		}
	}
}

// WithJWTRefusals calls fn with a fixed reason for every refused bearer:
// malformed, signature, claims, replayed, role or guard_error (for metrics).
func WithJWTRefusals(fn func(reason string)) JWTOption {
	return func(v *jwtVerifier) { v.refused = fn }
}

// NewJWTVerifier returns the HS256 bearer verifier of SPEC 3.4 keyed by the
// trimmed secret, consuming each jti once in st (SPEC 16.4). It returns nil
// when the trimmed secret is empty (JWT bearers disabled). A nil clk means
// the wall clock.
func NewJWTVerifier(secret string, st *store.Store, clk clock.Clock, opts ...JWTOption) api.JWTVerifier {
	secret = strings.TrimSpace(secret)
	if secret == "" {
		return nil
	}
	if st == nil {
		panic("security: NewJWTVerifier needs a store for the replay guard")
	}
	if clk == nil {
		clk = clock.Real{}
	}
	v := &jwtVerifier{
		secret:  []byte(secret),
		st:      st,
		clk:     clk,
		log:     slog.Default(),
		refused: func(string) {},
		// Claims are checked by hand (checkClaims) so the rules are SPEC 3.4's
		// to the second: exp is an integer, the leeway is inclusive, nbf and
		// iat are ignored and any aud is refused.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithStrictDecoding(),
			jwt.WithoutClaimsValidation(),
		),
	}
	for _, o := range opts {
		o(v)
	}
	return v
}

// VerifyJWT applies SPEC 3.4 steps 1-8. Every refusal is wire.ErrUnauthorized;
// the jti is consumed before the role is mapped, so a token with an unknown
// role is spent too.
func (v *jwtVerifier) VerifyJWT(token string) (api.Role, error) {
	if !jwtShaped(token) {
		return v.refuse("malformed")
	}
	var c claims
	tok, err := v.parser.ParseWithClaims(token, &c, v.key)
	if err != nil || !tok.Valid {
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			return v.refuse("signature")
		}
		return v.refuse("malformed")
	}
	role, jti, exp, ok := c.check(v.clk.Now().Unix())
	if !ok {
		return v.refuse("claims")
	}
	// exp is a u64 claim; the store clamps its own purge arithmetic.
	if err := v.st.ConsumeJTI(jti, int64(min(exp, math.MaxInt64))); err != nil {
		if !errors.Is(err, wire.ErrReplayed) {
			// The store failed, not the caller: say so without the token.
			v.log.Error("jwt replay guard unavailable; refusing JWT bearer", "err", err)
			return v.refuse("guard_error")
		}
		return v.refuse("replayed")
	}
	r, ok := roleNames[asciiLower(strings.TrimSpace(role))]
	if !ok {
		return v.refuse("role")
	}
	return r, nil
}

// refuse reports a refusal's reason and answers 401.
func (v *jwtVerifier) refuse(reason string) (api.Role, error) {
	v.refused(reason)
	return api.RoleNone, wire.ErrUnauthorized
}

var errNotHS256 = errors.New("security: signing method is not HS256")

func (v *jwtVerifier) key(t *jwt.Token) (any, error) {
	if t.Method != jwt.SigningMethodHS256 {
		return nil, errNotHS256
	}
	return v.secret, nil
}

// jwtShaped is SPEC 3.4's shape gate (three non-empty dot-separated
// segments), narrowed to the base64url alphabet and MaxJWTBytes. The
// alphabet check also closes encoding/base64's habit of skipping CR and LF,
// so a signature segment has exactly one accepted spelling.
func jwtShaped(token string) bool {
	if len(token) < 5 || len(token) > MaxJWTBytes {
		return false
	}
	dots, segLen := 0, 0
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c == '.':
			if segLen == 0 {
				return false
			}
			dots, segLen = dots+1, 0
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			segLen++
		default:
			return false
		}
	}
	return dots == 2 && segLen > 0
}

// claims holds the raw members of a JWT payload; check judges them only
// after the signature verified. It implements jwt.Claims so the parser can
// fill it; the getters are never consulted (claims validation is off).
type claims struct {
	raw map[string]json.RawMessage
}

func (c *claims) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &c.raw) }

// check applies SPEC 3.4 steps 3-6 at nowSec: role and jti must be JSON
// strings, exp a non-negative JSON integer not older than nowSec - leeway,
// no aud member at all, and a jti that is not blank. jti is returned as
// received (untrimmed): that is the replay key.
func (c *claims) check(nowSec int64) (role, jti string, exp uint64, ok bool) {
	if role, ok = jsonString(c.raw["role"]); !ok {
		return "", "", 0, false
	}
	if jti, ok = jsonString(c.raw["jti"]); !ok {
		return "", "", 0, false
	}
	if exp, ok = jsonUint(c.raw["exp"]); !ok {
		return "", "", 0, false
	}
	if cutoff := nowSec - int64(JWTLeeway/time.Second); cutoff > 0 && exp < uint64(cutoff) {
		return "", "", 0, false
	}
	if _, has := c.raw["aud"]; has {
		return "", "", 0, false
	}
	if strings.TrimSpace(jti) == "" {
		return "", "", 0, false
	}
	return role, jti, exp, true
}

func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonUint accepts a JSON number written as plain decimal digits (no sign,
// fraction or exponent) that fits a uint64.
func jsonUint(raw json.RawMessage) (uint64, bool) {
	n, err := strconv.ParseUint(string(raw), 10, 64)
	return n, err == nil
}

// asciiLower lower-cases ASCII letters only, so no exotic code point (the
// Kelvin sign, say) folds into a role name.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

func (c *claims) GetExpirationTime() (*jwt.NumericDate, error) { return nil, nil }
func (c *claims) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, nil }
func (c *claims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c *claims) GetIssuer() (string, error)                   { return "", nil }
func (c *claims) GetSubject() (string, error)                  { return "", nil }
func (c *claims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// MintJWT signs an HS256 bearer that NewJWTVerifier with the same secret
// accepts once: claims role (mesh, worker, submitter or admin; any case),
// jti, exp (exp.Unix()). A blank jti is replaced by NewToken(). The secret is
// trimmed, as the server trims VOX_MESH_JWT_HMAC_SECRET. Errors name the
// problem, never the secret.
func MintJWT(secret, role, jti string, exp time.Time) (string, error) {
	secret = strings.TrimSpace(secret)
	if secret == "" {
		return "", errors.New("security: JWT secret is empty (set VOX_MESH_JWT_HMAC_SECRET)")
	}
	r := asciiLower(strings.TrimSpace(role))
	if _, ok := roleNames[r]; !ok {
		return "", fmt.Errorf("security: unknown JWT role %q (want mesh, worker, submitter or admin)", role)
	}
	if strings.TrimSpace(jti) == "" {
		jti = NewToken()
	}
	if exp.Unix() < 0 {
		return "", errors.New("security: JWT exp must not be before 1970")
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"role": r, "jti": jti, "exp": exp.Unix()})
	s, err := tok.SignedString([]byte(secret))
	if err != nil {
		return "", errors.New("security: signing JWT failed")
	}
	return s, nil
}

// NewToken returns 192 random bits from crypto/rand as 48 lowercase hex
// characters: a fresh opaque bearer, bootstrap token or jti (SPEC 16.16d).
func NewToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}
