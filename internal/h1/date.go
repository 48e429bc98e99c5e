package h1

import (
	"net/http"
	"sync/atomic"
	"time"
)

// dateCache holds the formatted Date header value, refreshed at most once
// per second: formatting it per response is measurable at this rate.
type dateCache struct {
	v atomic.Pointer[dateValue]
}

type dateValue struct {
	sec int64
	b   []byte
}

func (d *dateCache) get(now time.Time) []byte {
	sec := now.Unix()
	if v := d.v.Load(); v != nil && v.sec == sec {
		return v.b
	}
	b := now.UTC().AppendFormat(make([]byte, 0, len(http.TimeFormat)), http.TimeFormat)
	d.v.Store(&dateValue{sec: sec, b: b})
	return b
}
