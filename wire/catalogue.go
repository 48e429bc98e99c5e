package wire

// Code classifies a domain error; the API maps each code to one HTTP status
// (api/errors.go). The pattern is wtf's error table.
type Code string

const (
	EINVALID      Code = "invalid"      // 400
	EUNAUTHORIZED Code = "unauthorized" // 401
	EFORBIDDEN    Code = "forbidden"    // 403
	ENOTFOUND     Code = "not_found"    // 404
	ECONFLICT     Code = "conflict"     // 409
	EGONE         Code = "gone"         // 410
	ETOOMANY      Code = "too_many"     // 429
	EUNAVAILABLE  Code = "unavailable"  // 503
)

// Error is a business answer: a code and the exact body text (SPEC
// Appendix B). An empty Message means an empty body.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return e.Message
}

func newErr(c Code, msg string) *Error { return &Error{Code: c, Message: msg} }

// The Appendix B catalogue, plus the texts of the issue 9 extensions.
var (
	ErrUnauthorized = newErr(EUNAUTHORIZED, "unauthorized")
	ErrNotFound     = newErr(ENOTFOUND, "") // empty-body 404

	ErrScopeMismatch  = newErr(EFORBIDDEN, "populi scope mismatch: set VOX_MESH_SCOPE_ID to match server")
	ErrNodeIDRequired = newErr(EINVALID, "populi: node id required")

	ErrSenderRequired     = newErr(EINVALID, "populi: sender_agent_id required (non-empty decimal digit string)")
	ErrSenderDigits       = newErr(EINVALID, "populi: sender_agent_id must be a non-empty decimal digit string (orchestrator agent id)")
	ErrReceiverRequired   = newErr(EINVALID, "populi: receiver_agent_id required (non-empty decimal digit string)")
	ErrReceiverDigits     = newErr(EINVALID, "populi: receiver_agent_id must be a non-empty decimal digit string (orchestrator agent id)")
	ErrUnknownClaimerJoin = newErr(EFORBIDDEN, "populi: unknown claimer_node_id (join node first)")
	ErrUnknownClaimer     = newErr(EFORBIDDEN, "populi: unknown claimer_node_id")
	ErrClaimerRequired    = newErr(EINVALID, "populi: claimer_node_id required")
	ErrClaimerQuarantined = newErr(EFORBIDDEN, "populi: claimer node is quarantined")
	ErrClaimerMaintenance = newErr(EFORBIDDEN, "populi: claimer node is in maintenance mode")
	ErrRenewNotHolder     = newErr(ECONFLICT, "populi: lease renew only for active lease holder")
	ErrNodeIDParamReq     = newErr(EINVALID, "populi: node_id required")
	ErrScopeKeyRequired   = newErr(EINVALID, "populi: scope_key required (non-empty)")
	ErrScopeKeyTooLong    = newErr(EINVALID, "populi: scope_key exceeds max length (2048)")
	ErrScopeKeyHeld       = newErr(ECONFLICT, "populi: scope_key already leased to another node")
	ErrLeaseIDRequired    = newErr(EINVALID, "populi: lease_id required")
	ErrExecRenewNotHolder = newErr(ECONFLICT, "populi: exec lease renew only for active lease holder")
	ErrExecRelNotHolder   = newErr(ECONFLICT, "populi: exec lease release only for active lease holder")

	// Issue 9: fencing tokens, nack, dead letters.
	ErrStaleLeaseToken = newErr(ECONFLICT, "populi: lease_token is not the current lease holder's token")
	ErrNackNotHolder   = newErr(ECONFLICT, "populi: nack only for active lease holder")
	ErrNotDead         = newErr(ECONFLICT, "populi: message is not dead-lettered")

	// Security (issue 3).
	ErrBootstrapDisabled = newErr(ENOTFOUND, "bootstrap exchange is not enabled")
	ErrBootstrapConsumed = newErr(EGONE, "bootstrap token already consumed")
	ErrBootstrapExpired  = newErr(EGONE, "bootstrap token expired")
	ErrBootstrapInvalid  = newErr(EUNAUTHORIZED, "invalid bootstrap token")
	ErrBootstrapNoMesh   = newErr(EUNAVAILABLE, "server missing VOX_MESH_TOKEN")
	ErrReplayed          = newErr(EUNAUTHORIZED, "unauthorized")
	ErrTooManyRequests   = newErr(ETOOMANY, "too many requests")
)

// Federation (SPEC 2.20, Appendix B), plus populi-db's size limits and
// directory cap (issue 17).
var (
	ErrFedSignatureLength = newErr(EINVALID, "populi: invalid signature length (expected 64 bytes)")
	ErrFedPublicKey       = newErr(EINVALID, "populi: invalid federation public key")
	ErrFedSignature       = newErr(EINVALID, "populi: invalid federation announcement signature")
	ErrFedSignaturePair   = newErr(EINVALID, "populi: signature and public_key must be provided together")
	ErrFedEntryTooLarge   = newErr(EINVALID, "populi: federation entry too large (scope_id, control_url and region_label at most 512 bytes each; at most 64 task_kinds and 256 supported_priorities)")
	ErrFedDirectoryFull   = newErr(ECONFLICT, "populi: federation directory full (10000 entries); only scopes already listed can be announced")
)
