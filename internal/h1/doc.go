// Package h1 is a small plaintext HTTP/1.1 server for any http.Handler.
//
// It exists because net/http's server spends a large share of populi-db's
// per-request CPU and latency on machinery this service does not need: a
// background-read goroutine per request (to notice client hang-ups), its
// abort through SetReadDeadline and a sync.Cond at the end of each request,
// and extra hand-offs between buffered writers. Here one goroutine per
// connection reads a request with http.ReadRequest, runs the handler and
// writes the answer; a request that arrives in one segment and whose answer
// fits in 64 KiB costs one read and one write.
//
// Visible behaviour follows net/http's server (default status, Date,
// sniffed Content-Type, Content-Length or chunked framing, HEAD, 1xx/204/304
// without body, keep-alive rules for HTTP/1.0 and 1.1, Expect: 100-continue,
// draining of unread request bodies up to 256 KiB, 400/431/417/501/505 for
// bad requests, graceful Shutdown).
//
// What it deliberately does not do:
//   - no TLS and no HTTP/2: keep net/http for those listeners;
//   - no Hijack, no response trailers, no WriteTimeout, no sendfile
//     (io.ReaderFrom), no "OPTIONS *" special case, no ConnState hooks;
//   - Shutdown closes a connection that has not sent its first byte yet at
//     once (net/http gives such a connection 5 s);
//   - no detection of a client that hangs up during a handler: a request's
//     context is cancelled when the handler returns, when its connection
//     closes or when the server shuts down (Shutdown cancels it too, so
//     long polls end early), but not when the peer goes away mid-request;
//   - http.MaxBytesReader can only tell net/http's own ResponseWriter that
//     a body was too large (through an unexported method); h1 notices it
//     when the handler stored the reader in the Request's Body it was given
//     (the documented pattern) and then closes the connection like net/http.
//     Otherwise the unread rest of the body is drained or the connection
//     closed by the usual 256 KiB rule, so the connection stays correct.
package h1
