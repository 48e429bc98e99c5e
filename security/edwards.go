package security

import "math/big"

// Just enough edwards25519 arithmetic, in math/big, to tell whether 32 bytes
// decode to a curve point and whether that point has small order.
// crypto/ed25519 keeps its point type internal and filippo.io/edwards25519 is
// not a dependency; these checks run once per key and once per signature R,
// so speed does not matter and constant time is not needed (keys and
// signatures are public).

var (
	fieldP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	// edD is the curve constant d = -121665/121666 mod p.
	edD = func() *big.Int {
		d := new(big.Int).ModInverse(big.NewInt(121666), fieldP)
		d.Mul(d, big.NewInt(-121665))
		return d.Mod(d, fieldP)
	}()
	bigOne = big.NewInt(1)
)

// edPoint is an affine point (x, y) on -x² + y² = 1 + d·x²·y².
type edPoint struct{ x, y *big.Int }

// decodeEdPoint decompresses a 32-byte encoding the way crypto/ed25519 and
// ed25519-dalek do: y is the low 255 bits little-endian, reduced mod p (a
// non-canonical y is accepted), the top bit picks the sign of x, and x = 0
// with the sign bit set is accepted. ok is false when no x exists for y.
func decodeEdPoint(b []byte) (p edPoint, ok bool) {
	if len(b) != 32 {
		return edPoint{}, false
	}
	be := make([]byte, 32)
	for i := range 32 {
		be[31-i] = b[i]
	}
	sign := uint(be[0] >> 7)
	be[0] &= 0x7f
	y := new(big.Int).SetBytes(be)
	y.Mod(y, fieldP)

	y2 := new(big.Int).Mul(y, y)
	y2.Mod(y2, fieldP)
	u := new(big.Int).Sub(y2, bigOne) // y² - 1
	u.Mod(u, fieldP)
	v := new(big.Int).Mul(edD, y2) // d·y² + 1, never 0: d is not a square
	v.Add(v, bigOne)
	v.Mod(v, fieldP)
	x2 := new(big.Int).ModInverse(v, fieldP)
	x2.Mul(x2, u)
	x2.Mod(x2, fieldP)
	x := new(big.Int).ModSqrt(x2, fieldP)
	if x == nil {
		return edPoint{}, false
	}
	if x.Bit(0) != sign {
		x.Sub(fieldP, x)
		x.Mod(x, fieldP)
	}
	return edPoint{x, y}, true
}

// add is the complete twisted Edwards addition law (a = -1); its
// denominators never vanish because d is not a square.
func (p edPoint) add(q edPoint) edPoint {
	m := func(a, b *big.Int) *big.Int { r := new(big.Int).Mul(a, b); return r.Mod(r, fieldP) }
	x1y2, y1x2 := m(p.x, q.y), m(p.y, q.x)
	x1x2, y1y2 := m(p.x, q.x), m(p.y, q.y)
	t := m(edD, m(x1x2, y1y2))
	inv := func(a *big.Int) *big.Int { return new(big.Int).ModInverse(a, fieldP) }
	dx := new(big.Int).Add(bigOne, t)
	dy := new(big.Int).Sub(bigOne, t)
	dy.Mod(dy, fieldP)
	x := m(new(big.Int).Add(x1y2, y1x2), inv(dx.Mod(dx, fieldP)))
	y := m(new(big.Int).Add(y1y2, x1x2), inv(dy))
	return edPoint{x, y}
}

func (p edPoint) isIdentity() bool { return p.x.Sign() == 0 && p.y.Cmp(bigOne) == 0 }

// hasSmallOrder reports whether p lies in the 8-torsion subgroup: [8]p = 0.
func (p edPoint) hasSmallOrder() bool {
	q := p
	for range 3 {
		q = q.add(q)
	}
	return q.isIdentity()
}

// smallOrderEncoding reports whether b decodes to a point of order 1, 2, 4
// or 8 (the keys and R values strict Ed25519 verification refuses).
func smallOrderEncoding(b []byte) bool {
	p, ok := decodeEdPoint(b)
	return ok && p.hasSmallOrder()
}
