// Package edpoint answers the two questions populi-db asks of Ed25519 keys
// and signature R values before it verifies anything: do these 32 bytes
// decode to a curve point, and is that point of small order. Result
// attestation (package security) and federation announcements (package
// federation) share it, so both refuse exactly the same keys. The curve
// arithmetic is filippo.io/edwards25519's, not hand-written.
package edpoint

import "filippo.io/edwards25519"

// Decode decompresses a 32-byte encoding. It accepts what crypto/ed25519
// and ed25519-dalek accept: a non-canonical y (reduced mod p) and x = 0
// with the sign bit set. ok is false for any other length or when no x
// exists for y.
func Decode(b []byte) (p *edwards25519.Point, ok bool) {
	if len(b) != 32 {
		return nil, false
	}
	p, err := new(edwards25519.Point).SetBytes(b)
	return p, err == nil
}

// IsPoint reports whether b is the encoding of a curve point.
func IsPoint(b []byte) bool {
	_, ok := Decode(b)
	return ok
}

// HasSmallOrder reports whether p lies in the 8-torsion subgroup ([8]p is
// the identity): the keys and R values strict verification refuses.
func HasSmallOrder(p *edwards25519.Point) bool {
	q := new(edwards25519.Point).MultByCofactor(p)
	return q.Equal(edwards25519.NewIdentityPoint()) == 1
}

// SmallOrderEncoding reports whether b decodes to a point of order 1, 2, 4
// or 8.
func SmallOrderEncoding(b []byte) bool {
	p, ok := Decode(b)
	return ok && HasSmallOrder(p)
}
