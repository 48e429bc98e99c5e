// Package crashtest holds the crash-and-restart proof of issue 4 (in its
// _test.go files): it runs `populi-db serve` as a child process, drives
// concurrent mixed traffic over HTTP, SIGKILLs the server at random moments
// and, after every kill, checks the db file and the restarted server against
// a ledger of every 2xx answer received.
//
//	go test ./crashtest                          # 20 kill cycles, about a minute at most
//	go test ./crashtest -crash.cycles=300 -v     # a longer run
//	go test ./crashtest -crash.seed=42           # replay a seed's choices
package crashtest
