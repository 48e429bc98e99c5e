package h1

import (
	"errors"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// response is the http.ResponseWriter of one request. The body is kept in
// the connection's buffer until the handler returns, so a small answer
// goes out in one write with its Content-Length; past 64 KiB or on Flush
// the header is sent and the body streamed (chunked unless the handler set
// Content-Length, or close-delimited for HTTP/1.0).
type response struct {
	c      *conn
	req    *http.Request
	header http.Header // the handler's map
	// hdr is what is sent: a copy of header taken at WriteHeader when the
	// handler held the map, so later changes have no effect (net/http).
	hdr          http.Header
	calledHeader bool

	status        int
	wroteHeader   bool  // WriteHeader ran (explicitly or by the first Write)
	committed     bool  // the header is on the wire; the body streams
	chunking      bool  // streamed body uses chunked framing
	contentLength int64 // declared or computed Content-Length, or -1
	written       int64 // body bytes accepted from the handler

	wantsClose       bool // the request said Connection: close
	wants10KeepAlive bool // HTTP/1.0 request with Connection: keep-alive
	closeAfter       bool // close the conn after this response
	lingerOnClose    bool // close with unread input: half-close and wait
	limitHit         bool // http.MaxBytesReader's limit was hit

	canWriteContinue bool // 100 Continue may still be sent on the first body read
	expectContinue   bool // the client asked for 100 Continue
	reqBody          requestBody

	body []byte // the buffered body (the conn's reused buffer)
}

// maxBytesReaderType is the type http.MaxBytesReader returns; see
// checkBodyLimit.
var maxBytesReaderType = reflect.TypeOf(http.MaxBytesReader(nil, http.NoBody, 0))

func (w *response) Header() http.Header {
	w.calledHeader = true
	return w.header
}

func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		w.c.log.Debug("h1: superfluous WriteHeader call", "code", code, "status", w.status, "path", w.req.URL.Path)
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// An informational answer (103 Early Hints) goes out now.
		out := appendStatusLine(w.c.out[:0], w.req, code)
		out = w.c.appendHeader(out, w.header, nil)
		out = append(out, "\r\n"...)
		w.c.out = out[:0]
		w.c.write(out)
		return
	}
	w.canWriteContinue = false
	w.wroteHeader = true
	w.status = code
	w.hdr = w.header
	if w.calledHeader {
		w.hdr = w.header.Clone()
	}
	if cl := w.hdr.Get("Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.contentLength = v
		} else {
			w.c.log.Warn("h1: invalid Content-Length set by handler; ignored", "value", cl)
			w.hdr.Del("Content-Length")
		}
	}
}

func (w *response) bodyAllowed() bool {
	return bodyAllowedForStatus(w.status)
}

func bodyAllowedForStatus(code int) bool {
	switch {
	case code >= 100 && code <= 199, code == http.StatusNoContent, code == http.StatusNotModified:
		return false
	}
	return true
}

func (w *response) Write(p []byte) (int, error) {
	return w.write(len(p), p, "")
}

func (w *response) WriteString(s string) (int, error) {
	return w.write(len(s), nil, s)
}

func (w *response) write(n int, p []byte, s string) (int, error) {
	w.canWriteContinue = false
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if n == 0 {
		return 0, nil
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if w.c.werr != nil {
		return 0, w.c.werr
	}
	w.written += int64(n)
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	if !w.committed {
		if len(w.body)+n <= maxBufferedResponse {
			if p != nil {
				w.body = append(w.body, p...)
			} else {
				w.body = append(w.body, s...)
			}
			return n, nil
		}
		if p == nil {
			p = []byte(s)
		}
		if err := w.commit(false, p); err != nil {
			return 0, err
		}
	}
	if p == nil {
		p = []byte(s)
	}
	if err := w.streamBody(p); err != nil {
		return 0, err
	}
	return n, nil
}

// streamBody sends p (after the header went out), framed as a chunk when
// chunking. Small pieces gather in the buffer up to 64 KiB; Flush and
// finish send what is gathered.
func (w *response) streamBody(p []byte) error {
	if w.req.Method == http.MethodHead {
		return nil
	}
	frame := 0
	if w.chunking {
		frame = 16 + 4
	}
	if len(w.body)+len(p)+frame > maxBufferedResponse {
		if err := w.flushBody(); err != nil {
			return err
		}
	}
	if len(p)+frame > maxBufferedResponse {
		// Large pieces go straight from the handler's slice.
		if !w.chunking {
			return w.c.write(p)
		}
		head := strconv.AppendInt(w.body[:0], int64(len(p)), 16)
		head = append(head, "\r\n"...)
		err := w.c.writeBuffers(net.Buffers{head, p, []byte("\r\n")})
		w.body = head[:0]
		return err
	}
	if w.chunking {
		w.body = strconv.AppendInt(w.body, int64(len(p)), 16)
		w.body = append(w.body, "\r\n"...)
		w.body = append(w.body, p...)
		w.body = append(w.body, "\r\n"...)
	} else {
		w.body = append(w.body, p...)
	}
	return nil
}

// flushBody writes the gathered streamed body.
func (w *response) flushBody() error {
	if len(w.body) == 0 {
		return nil
	}
	err := w.c.write(w.body)
	w.body = w.body[:0]
	return err
}

// Flush sends the header and what the body holds so far; the rest of the
// response streams (http.Flusher).
func (w *response) Flush() { w.FlushError() }

// FlushError is Flush reporting the write error (for http.ResponseController).
func (w *response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		return w.commit(false, nil)
	}
	return w.flushBody()
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error {
	w.c.hasDeadline = true
	return w.c.nc.SetReadDeadline(t)
}

func (w *response) SetWriteDeadline(t time.Time) error {
	w.c.hasWriteDeadline = true
	return w.c.nc.SetWriteDeadline(t)
}

// checkBodyLimit notices that http.MaxBytesReader's limit was hit when the
// handler stored the reader in the request's Body (the documented
// pattern). net/http learns it through an unexported method on its own
// ResponseWriter; a zero-length Read on the reader returns its sticky
// error without touching the body under it.
func (w *response) checkBodyLimit() {
	if w.limitHit || w.req.Body == nil || reflect.TypeOf(w.req.Body) != maxBytesReaderType {
		return
	}
	_, err := w.req.Body.Read(nil)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		w.limitHit = true
		w.closeAfter = true
		w.lingerOnClose = true
	}
}

// finish completes the response after the handler returned.
func (w *response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(true, nil)
	} else {
		if w.chunking {
			w.body = append(w.body, "0\r\n\r\n"...)
		}
		w.flushBody()
	}
	if w.req.Method != http.MethodHead && w.contentLength != -1 && w.bodyAllowed() && w.written != w.contentLength {
		// Fewer bytes than the declared Content-Length: the peer is
		// still waiting for the rest; only a close ends it.
		w.closeAfter = true
	}
	if !w.reqBody.sawEOF {
		// Unread body left (it was not drained): the next request
		// cannot be found; close.
		w.closeAfter = true
	}
}

// excluded marks headers of the handler's map that are not sent, because
// the framing decided here replaces them.
type excluded struct {
	contentLength, transferEncoding, connection, contentType bool
}

// commit writes the status line and header. final means the handler has
// returned and w.body is the whole body: it goes out in the same write,
// with a Content-Length. Otherwise the header is sent with the framing
// for a streamed body, followed by w.body as the first piece; next is the
// data about to follow, sniffed for Content-Type when w.body is empty.
func (w *response) commit(final bool, next []byte) error {
	w.committed = true
	c := w.c
	req := w.req
	h := w.hdr
	isHEAD := req.Method == http.MethodHead
	bodyOK := w.bodyAllowed()
	w.checkBodyLimit()
	var ex excluded

	te := headerGet(h, "Transfer-Encoding")
	hasTE := te != ""
	var setCL bool
	if final && !hasTE && bodyOK && w.contentLength == -1 && (!isHEAD || len(w.body) > 0) {
		w.contentLength = int64(len(w.body))
		setCL = true
	}
	keepAlives := !c.s.inShutdown.Load()
	hasCL := w.contentLength != -1
	setConn := ""
	if w.wants10KeepAlive && (isHEAD || hasCL || !bodyOK) {
		if _, set := h["Connection"]; !set {
			setConn = "keep-alive"
		}
	} else if !req.ProtoAtLeast(1, 1) || w.wantsClose {
		w.closeAfter = true
	}
	if hasToken(h["Connection"], "close") || !keepAlives {
		w.closeAfter = true
	}
	if w.expectContinue && !w.reqBody.sawEOF {
		// The client may still be waiting to send the body.
		w.closeAfter = true
	}
	if req.ContentLength != 0 && !w.closeAfter {
		tooBig := false
		b := &w.reqBody
		switch {
		case b.sawEOF:
		case b.closed:
			w.closeAfter = true
		case req.ContentLength > 0 && req.ContentLength-b.n >= maxPostHandlerReadBytes:
			tooBig = true
		default:
			if !b.discardRest() {
				tooBig = true
			}
		}
		if tooBig {
			w.closeAfter = true
			w.lingerOnClose = true
		}
	}
	if w.limitHit || w.lingerOnClose {
		w.closeAfter = true
	}

	var contentType string
	if bodyOK {
		_, haveType := h["Content-Type"]
		sniff := w.body
		if len(sniff) == 0 {
			sniff = next
		}
		if !haveType && !hasTE && len(sniff) > 0 && headerGet(h, "Content-Encoding") == "" {
			contentType = http.DetectContentType(sniff)
		}
	} else {
		ex.contentLength = true
		ex.transferEncoding = true
		if w.status == http.StatusNotModified {
			ex.contentType = true
		}
		hasCL, setCL = false, false
	}
	if hasCL && hasTE && te != "identity" {
		c.log.Warn("h1: handler set both Transfer-Encoding and Content-Length; Content-Length dropped", "te", te)
		ex.contentLength = true
		hasCL, setCL = false, false
		w.contentLength = -1
	}
	setTE := false
	switch {
	case isHEAD || !bodyOK:
		ex.transferEncoding = true
	case hasCL:
		ex.transferEncoding = true
	case req.ProtoAtLeast(1, 1):
		if hasTE && te == "identity" {
			w.closeAfter = true
			ex.transferEncoding = true
		} else {
			w.chunking = true
			setTE = true
			ex.transferEncoding = true
		}
	default:
		// HTTP/1.0 without a length: the body ends at close.
		w.closeAfter = true
		ex.transferEncoding = true
	}
	if w.chunking {
		ex.contentLength = true
		setCL = false
	}
	if w.closeAfter && !hasToken(h["Connection"], "close") {
		ex.connection = true
		setConn = ""
		if req.ProtoAtLeast(1, 1) {
			setConn = "close"
		}
	}

	out := appendStatusLine(c.out[:0], req, w.status)
	out = c.appendHeader(out, h, &ex)
	if setCL {
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, w.contentLength, 10)
		out = append(out, "\r\n"...)
	}
	if contentType != "" {
		out = append(out, "Content-Type: "...)
		out = append(out, contentType...)
		out = append(out, "\r\n"...)
	}
	if setConn != "" {
		out = append(out, "Connection: "...)
		out = append(out, setConn...)
		out = append(out, "\r\n"...)
	}
	if setTE {
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	if _, ok := h["Date"]; !ok {
		out = append(out, "Date: "...)
		out = append(out, c.s.date.get(time.Now())...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "\r\n"...)

	pending := w.body
	w.body = w.body[:0]
	if isHEAD || !bodyOK {
		pending = nil
	}
	var err error
	switch {
	case final:
		if int64(len(pending)) > w.contentLength && w.contentLength >= 0 {
			pending = pending[:w.contentLength]
		}
		if len(out)+len(pending) <= maxBufferedResponse+4096 {
			out = append(out, pending...)
			err = c.write(out)
		} else {
			err = c.writeBuffers(net.Buffers{out, pending})
		}
	case w.chunking && len(pending) > 0:
		head := strconv.AppendInt(out, int64(len(pending)), 16)
		head = append(head, "\r\n"...)
		err = c.writeBuffers(net.Buffers{head, pending, []byte("\r\n")})
		out = head
	default:
		err = c.writeBuffers(net.Buffers{out, pending})
	}
	c.out = out[:0]
	if cap(c.out) > 4*maxBufferedResponse {
		c.out = nil
	}
	return err
}

// appendStatusLine appends "HTTP/1.x code text\r\n".
func appendStatusLine(b []byte, req *http.Request, code int) []byte {
	if req.ProtoAtLeast(1, 1) {
		b = append(b, "HTTP/1.1 "...)
	} else {
		b = append(b, "HTTP/1.0 "...)
	}
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}

// appendHeader appends the handler's header in sorted order, leaving out
// the excluded ones and names that are not valid tokens; line breaks in
// values become spaces (net/http's Header.Write).
func (c *conn) appendHeader(b []byte, h http.Header, ex *excluded) []byte {
	keys := c.hdrKeys[:0]
	for k := range h {
		if ex != nil {
			switch k {
			case "Content-Length":
				if ex.contentLength {
					continue
				}
			case "Transfer-Encoding":
				if ex.transferEncoding {
					continue
				}
			case "Connection":
				if ex.connection {
					continue
				}
			case "Content-Type":
				if ex.contentType {
					continue
				}
			}
		}
		if !validFieldName(k) {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			start := len(b)
			b = append(b, strings.TrimSpace(v)...)
			for i := start; i < len(b); i++ {
				if b[i] == '\r' || b[i] == '\n' {
					b[i] = ' '
				}
			}
			b = append(b, "\r\n"...)
		}
	}
	clear(keys)
	c.hdrKeys = keys[:0]
	return b
}

// headerGet is Header.Get for a canonical key, without canonicalising.
func headerGet(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// hasToken reports whether a comma-separated header value list holds
// token (case-insensitive), as in "Connection: keep-alive, Upgrade".
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// validFieldName reports whether s is an RFC 7230 token.
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(b byte) bool {
	if b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// validFieldValue rejects control bytes other than tab.
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}

// validHost is httpguts.ValidHostHeader's character check.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		b := h[i]
		if b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' {
			continue
		}
		if strings.IndexByte("!$%&'()*+,-.:;=[]_~", b) < 0 {
			return false
		}
	}
	return true
}
