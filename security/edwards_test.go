package security

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"math/big"
	"testing"
)

// The encodings of points of order 1, 2, 4 and 8, canonical and not, as in
// libsodium's ge25519_has_small_order blocklist; the sign bit is ignored.
var smallOrderHex = []string{
	"0000000000000000000000000000000000000000000000000000000000000000", // order 4
	"0100000000000000000000000000000000000000000000000000000000000000", // identity
	"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p-1: order 2
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p (= 0): order 4
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p+1 (= 1): identity
}

func TestSmallOrderEncodings(t *testing.T) {
	t.Parallel()
	for _, h := range smallOrderHex {
		b, _ := hex.DecodeString(h)
		for _, sign := range []byte{0, 0x80} {
			e := append([]byte(nil), b...)
			e[31] |= sign
			if !smallOrderEncoding(e) {
				t.Errorf("%x: not recognised as small order", e)
			}
		}
	}
	if smallOrderEncoding(edBasePoint()) {
		t.Error("base point reported small order")
	}
}

func TestDecodeEdPoint(t *testing.T) {
	t.Parallel()
	for i := range 32 {
		seed := make([]byte, 32)
		seed[0] = byte(i)
		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		p, ok := decodeEdPoint(pub)
		if !ok || p.hasSmallOrder() {
			t.Fatalf("public key %x: decoded %v, small order %v", pub, ok, ok && p.hasSmallOrder())
		}
		if enc := encodeEdPoint(p); !bytes.Equal(enc, pub) {
			t.Fatalf("re-encoding %x gives %x", pub, enc)
		}
		if !scalarMult(p, edOrder).isIdentity() {
			t.Fatalf("[L]A ≠ 0 for %x", pub)
		}
	}
	// Random strings: about half are points, and every decoded point is on
	// the curve.
	decoded := 0
	for range 400 {
		b := make([]byte, 32)
		rand.Read(b)
		p, ok := decodeEdPoint(b)
		if !ok {
			continue
		}
		decoded++
		if !onCurve(p) {
			t.Fatalf("%x decoded off the curve", b)
		}
	}
	if decoded < 120 || decoded > 280 {
		t.Fatalf("%d of 400 random encodings decoded; expected about half", decoded)
	}
	if _, ok := decodeEdPoint(make([]byte, 31)); ok {
		t.Fatal("31-byte input decoded")
	}
}

func encodeEdPoint(p edPoint) []byte {
	b := intToLE32(p.y)
	b[31] |= byte(p.x.Bit(0) << 7)
	return b
}

func onCurve(p edPoint) bool {
	m := func(a, b *big.Int) *big.Int { r := new(big.Int).Mul(a, b); return r.Mod(r, fieldP) }
	x2, y2 := m(p.x, p.x), m(p.y, p.y)
	lhs := new(big.Int).Sub(y2, x2)
	lhs.Mod(lhs, fieldP)
	rhs := new(big.Int).Add(bigOne, m(edD, m(x2, y2)))
	return lhs.Cmp(rhs.Mod(rhs, fieldP)) == 0
}

func scalarMult(p edPoint, k *big.Int) edPoint {
	acc := edPoint{big.NewInt(0), big.NewInt(1)}
	for i := k.BitLen() - 1; i >= 0; i-- {
		acc = acc.add(acc)
		if k.Bit(i) == 1 {
			acc = acc.add(p)
		}
	}
	return acc
}
