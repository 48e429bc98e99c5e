package client

import (
	"context"

	"populi-db/wire"
)

// Page size bounds of the pager (SPEC 15.3).
const (
	PageSizeMin = 1
	PageSizeMax = 256
)

// Pager walks a mailbox listing (or a dead-letter listing) newest to
// oldest with a before_message_id cursor. It is a snapshot-free cursor:
// rows acked between pages disappear, rows delivered later are not
// visited. Not safe for concurrent use.
type Pager struct {
	c        *Client
	receiver string
	size     uint64
	cursor   *uint64
	done     bool
	dead     bool
}

// NewInboxPager pages receiver's mailbox; pageSize is clamped to [1, 256].
func (c *Client) NewInboxPager(receiver string, pageSize int) *Pager {
	return &Pager{c: c, receiver: receiver, size: uint64(min(max(pageSize, PageSizeMin), PageSizeMax))}
}

// NewDeadPager pages receiver's dead letters (admin); pageSize is clamped
// to [1, 256].
func (c *Client) NewDeadPager(receiver string, pageSize int) *Pager {
	p := c.NewInboxPager(receiver, pageSize)
	p.dead = true
	return p
}

// Done reports whether the pager has seen the end (an empty page).
func (p *Pager) Done() bool { return p.done }

// NextPage returns the next page, newest first. An empty page means the end;
// after it, NextPage returns empty pages without a request.
func (p *Pager) NextPage(ctx context.Context) ([]wire.StoredMessage, error) {
	if p.done {
		return nil, nil
	}
	size := p.size
	var msgs []wire.StoredMessage
	var err error
	if p.dead {
		msgs, err = p.c.DeadLetters(ctx, wire.DeadListRequest{ReceiverAgentID: p.receiver, MaxMessages: &size, BeforeMessageID: p.cursor})
	} else {
		msgs, err = p.c.Inbox(ctx, wire.InboxRequest{ReceiverAgentID: p.receiver, MaxMessages: &size, BeforeMessageID: p.cursor})
	}
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		p.done = true
		return nil, nil
	}
	last := msgs[len(msgs)-1].ID
	p.cursor = &last
	return msgs, nil
}

// All pages to the end and returns every row, newest first.
func (p *Pager) All(ctx context.Context) ([]wire.StoredMessage, error) {
	var all []wire.StoredMessage
	for {
		page, err := p.NextPage(ctx)
		if err != nil {
			return all, err
		}
		if len(page) == 0 {
			return all, nil
		}
		all = append(all, page...)
	}
}

// InboxAllPaged lists receiver's whole mailbox, newest first, pageSize rows
// per request.
func (c *Client) InboxAllPaged(ctx context.Context, receiver string, pageSize int) ([]wire.StoredMessage, error) {
	return c.NewInboxPager(receiver, pageSize).All(ctx)
}

// DeadAllPaged lists all of receiver's dead letters, newest first (admin).
func (c *Client) DeadAllPaged(ctx context.Context, receiver string, pageSize int) ([]wire.StoredMessage, error) {
	return c.NewDeadPager(receiver, pageSize).All(ctx)
}
