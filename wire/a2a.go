package wire

import "encoding/json"

// DeliverRequest is the body of POST /v1/populi/a2a/deliver (SPEC 1.5), plus
// the additive not_before_unix_ms for delayed delivery (issue 9).
type DeliverRequest struct {
	SenderAgentID       string  `json:"sender_agent_id"`
	ReceiverAgentID     string  `json:"receiver_agent_id"`
	MessageType         string  `json:"message_type"`
	Payload             string  `json:"payload"`
	IdempotencyKey      *string `json:"idempotency_key,omitempty"`
	PrivacyClass        *string `json:"privacy_class,omitempty"`
	PayloadBlake3Hex    *string `json:"payload_blake3_hex,omitempty"`
	WorkerEd25519SigB64 *string `json:"worker_ed25519_sig_b64,omitempty"`
	JWEPayload          *string `json:"jwe_payload,omitempty"`
	Priority            *uint8  `json:"priority,omitempty"`
	TaskKind            *string `json:"task_kind,omitempty"`
	ModelID             *string `json:"model_id,omitempty"`
	Traceparent         *string `json:"traceparent,omitempty"`
	NotBeforeUnixMs     *uint64 `json:"not_before_unix_ms,omitempty"`
}

// UnmarshalJSON takes the hand-written fast path (deliver_fast.go) where it
// applies and encoding/json otherwise.
func (r *DeliverRequest) UnmarshalJSON(b []byte) error {
	if r.decodeFast(b) {
		return nil
	}
	return r.unmarshalSlow(b)
}

// unmarshalSlow is the encoding/json path: the fast path's fallback and the
// reference its tests compare against.
func (r *DeliverRequest) unmarshalSlow(b []byte) error {
	type plain DeliverRequest
	var aux struct {
		plain
		SenderAgentID   *string `json:"sender_agent_id"`
		ReceiverAgentID *string `json:"receiver_agent_id"`
		MessageType     *string `json:"message_type"`
		Payload         *string `json:"payload"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.SenderAgentID == nil:
		return missing("sender_agent_id")
	case aux.ReceiverAgentID == nil:
		return missing("receiver_agent_id")
	case aux.MessageType == nil:
		return missing("message_type")
	case aux.Payload == nil:
		return missing("payload")
	}
	*r = DeliverRequest(aux.plain)
	r.SenderAgentID, r.ReceiverAgentID, r.MessageType, r.Payload = *aux.SenderAgentID, *aux.ReceiverAgentID, *aux.MessageType, *aux.Payload
	return nil
}

// DeliverResponse answers a delivery.
type DeliverResponse struct {
	Accepted  bool   `json:"accepted"`
	MessageID uint64 `json:"message_id"`
}

// Row states (additive `state` field, issue 9).
const (
	StateReady   = "ready"
	StateLeased  = "leased"
	StateDelayed = "delayed"
	StateDead    = "dead"
	StateAcked   = "acked"
)

// StoredMessage is a mailbox row (SPEC 1.6) as returned by inbox and stored
// in bbolt. Fields after traceparent are issue 9's additive extensions.
type StoredMessage struct {
	ID                   uint64  `json:"id"`
	SenderAgentID        string  `json:"sender_agent_id"`
	ReceiverAgentID      string  `json:"receiver_agent_id"`
	MessageType          string  `json:"message_type"`
	Payload              string  `json:"payload"`
	CreatedUnixMs        uint64  `json:"created_unix_ms"`
	Acknowledged         bool    `json:"acknowledged"`
	LeaseHolderNodeID    *string `json:"lease_holder_node_id,omitempty"`
	LeaseExpiresUnixMs   *uint64 `json:"lease_expires_unix_ms,omitempty"`
	PrivacyClass         *string `json:"privacy_class,omitempty"`
	IdempotencyDedupeKey *string `json:"idempotency_dedupe_key,omitempty"`
	PayloadBlake3Hex     *string `json:"payload_blake3_hex,omitempty"`
	WorkerEd25519SigB64  *string `json:"worker_ed25519_sig_b64,omitempty"`
	JWEPayload           *string `json:"jwe_payload,omitempty"`
	Priority             uint8   `json:"priority"`
	TaskKind             *string `json:"task_kind,omitempty"`
	ModelID              *string `json:"model_id,omitempty"`
	SenderNodeID         *string `json:"sender_node_id,omitempty"`
	Traceparent          *string `json:"traceparent,omitempty"`

	// Issue 9 extensions (optional on the wire; absent in legacy rows).
	State           string  `json:"state,omitempty"`
	DeliveryCount   uint32  `json:"delivery_count,omitempty"`
	LeaseToken      *uint64 `json:"lease_token,omitempty"`
	NotBeforeUnixMs *uint64 `json:"not_before_unix_ms,omitempty"`
}

// UnmarshalJSON applies the legacy-load default priority of 128.
func (m *StoredMessage) UnmarshalJSON(b []byte) error {
	type plain StoredMessage
	aux := struct {
		plain
		Priority *uint8 `json:"priority"`
	}{}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*m = StoredMessage(aux.plain)
	m.Priority = DefaultPriority
	if aux.Priority != nil {
		m.Priority = *aux.Priority
	}
	return nil
}

// DefaultPriority is a delivery's priority when none is given.
const DefaultPriority = 128

// InboxRequest is the body of POST /v1/populi/a2a/inbox. wait_ms is issue 9's
// long-poll extension.
type InboxRequest struct {
	ReceiverAgentID string  `json:"receiver_agent_id"`
	ClaimerNodeID   *string `json:"claimer_node_id,omitempty"`
	MaxMessages     *uint64 `json:"max_messages,omitempty"`
	BeforeMessageID *uint64 `json:"before_message_id,omitempty"`
	WaitMs          *uint64 `json:"wait_ms,omitempty"`
}

func (r *InboxRequest) UnmarshalJSON(b []byte) error {
	type plain InboxRequest
	var aux struct {
		plain
		ReceiverAgentID *string `json:"receiver_agent_id"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if aux.ReceiverAgentID == nil {
		return missing("receiver_agent_id")
	}
	*r = InboxRequest(aux.plain)
	r.ReceiverAgentID = *aux.ReceiverAgentID
	return nil
}

// InboxResponse answers inbox listings and claims.
type InboxResponse struct {
	Messages []StoredMessage `json:"messages"`
}

// AckRequest is the body of POST /v1/populi/a2a/ack.
type AckRequest struct {
	ReceiverAgentID string  `json:"receiver_agent_id"`
	MessageID       uint64  `json:"message_id"`
	LeaseToken      *uint64 `json:"lease_token,omitempty"`
}

func (r *AckRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		ReceiverAgentID *string `json:"receiver_agent_id"`
		MessageID       *uint64 `json:"message_id"`
		LeaseToken      *uint64 `json:"lease_token"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.ReceiverAgentID == nil:
		return missing("receiver_agent_id")
	case aux.MessageID == nil:
		return missing("message_id")
	}
	*r = AckRequest{*aux.ReceiverAgentID, *aux.MessageID, aux.LeaseToken}
	return nil
}

// LeaseRenewRequest is the body of POST /v1/populi/a2a/lease-renew.
type LeaseRenewRequest struct {
	ReceiverAgentID string  `json:"receiver_agent_id"`
	MessageID       uint64  `json:"message_id"`
	ClaimerNodeID   string  `json:"claimer_node_id"`
	LeaseToken      *uint64 `json:"lease_token,omitempty"`
}

func (r *LeaseRenewRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		ReceiverAgentID *string `json:"receiver_agent_id"`
		MessageID       *uint64 `json:"message_id"`
		ClaimerNodeID   *string `json:"claimer_node_id"`
		LeaseToken      *uint64 `json:"lease_token"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.ReceiverAgentID == nil:
		return missing("receiver_agent_id")
	case aux.MessageID == nil:
		return missing("message_id")
	case aux.ClaimerNodeID == nil:
		return missing("claimer_node_id")
	}
	*r = LeaseRenewRequest{*aux.ReceiverAgentID, *aux.MessageID, *aux.ClaimerNodeID, aux.LeaseToken}
	return nil
}

// NackRequest is the body of POST /v1/populi/a2a/nack (issue 9).
type NackRequest struct {
	ReceiverAgentID string  `json:"receiver_agent_id"`
	MessageID       uint64  `json:"message_id"`
	ClaimerNodeID   string  `json:"claimer_node_id"`
	LeaseToken      *uint64 `json:"lease_token,omitempty"`
	RetryAfterMs    *uint64 `json:"retry_after_ms,omitempty"`
}

func (r *NackRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		ReceiverAgentID *string `json:"receiver_agent_id"`
		MessageID       *uint64 `json:"message_id"`
		ClaimerNodeID   *string `json:"claimer_node_id"`
		LeaseToken      *uint64 `json:"lease_token"`
		RetryAfterMs    *uint64 `json:"retry_after_ms"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.ReceiverAgentID == nil:
		return missing("receiver_agent_id")
	case aux.MessageID == nil:
		return missing("message_id")
	case aux.ClaimerNodeID == nil:
		return missing("claimer_node_id")
	}
	*r = NackRequest{*aux.ReceiverAgentID, *aux.MessageID, *aux.ClaimerNodeID, aux.LeaseToken, aux.RetryAfterMs}
	return nil
}

// DeadListRequest is the body of POST /v1/populi/admin/a2a/dead: the same
// paging as an inbox listing.
type DeadListRequest struct {
	ReceiverAgentID string  `json:"receiver_agent_id"`
	MaxMessages     *uint64 `json:"max_messages,omitempty"`
	BeforeMessageID *uint64 `json:"before_message_id,omitempty"`
}

func (r *DeadListRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		ReceiverAgentID *string `json:"receiver_agent_id"`
		MaxMessages     *uint64 `json:"max_messages"`
		BeforeMessageID *uint64 `json:"before_message_id"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if aux.ReceiverAgentID == nil {
		return missing("receiver_agent_id")
	}
	*r = DeadListRequest{*aux.ReceiverAgentID, aux.MaxMessages, aux.BeforeMessageID}
	return nil
}

// RequeueRequest is the body of POST /v1/populi/admin/a2a/requeue.
type RequeueRequest struct {
	ReceiverAgentID string `json:"receiver_agent_id"`
	MessageID       uint64 `json:"message_id"`
}

func (r *RequeueRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		ReceiverAgentID *string `json:"receiver_agent_id"`
		MessageID       *uint64 `json:"message_id"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.ReceiverAgentID == nil:
		return missing("receiver_agent_id")
	case aux.MessageID == nil:
		return missing("message_id")
	}
	*r = RequeueRequest{*aux.ReceiverAgentID, *aux.MessageID}
	return nil
}

// QueueStats answers GET /v1/populi/queue/stats (SPEC 2.20) with issue 9's
// per-state counts and per-receiver oldest-ready age.
type QueueStats struct {
	PendingCount      uint64            `json:"pending_count"`
	PendingByKind     map[string]uint64 `json:"pending_by_kind"`
	PendingByPriority map[string]uint64 `json:"pending_by_priority"`
	ByState           StateCounts       `json:"by_state"`
	Receivers         []ReceiverStats   `json:"receivers"`
}

// StateCounts is the number of rows in each state.
type StateCounts struct {
	Ready   uint64 `json:"ready"`
	Leased  uint64 `json:"leased"`
	Delayed uint64 `json:"delayed"`
	Dead    uint64 `json:"dead"`
	Acked   uint64 `json:"acked"`
}

// ReceiverStats is one receiver's ready depth and its oldest ready row's age.
type ReceiverStats struct {
	ReceiverAgentID  string `json:"receiver_agent_id"`
	Ready            uint64 `json:"ready"`
	OldestReadyAgeMs uint64 `json:"oldest_ready_age_ms"`
}
