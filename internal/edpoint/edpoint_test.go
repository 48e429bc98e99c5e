package edpoint

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
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
			if !SmallOrderEncoding(e) {
				t.Errorf("%x: not recognised as small order", e)
			}
		}
	}
	base := make([]byte, 32) // the base point B (y = 4/5)
	base[0] = 0x58
	for i := 1; i < 32; i++ {
		base[i] = 0x66
	}
	if !IsPoint(base) || SmallOrderEncoding(base) {
		t.Error("base point: not a point, or reported small order")
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	for i := range 32 {
		seed := make([]byte, 32)
		seed[0] = byte(i)
		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		p, ok := Decode(pub)
		if !ok || HasSmallOrder(p) {
			t.Fatalf("public key %x: decoded %v", pub, ok)
		}
		if !bytes.Equal(p.Bytes(), pub) {
			t.Fatalf("re-encoding %x gives %x", pub, p.Bytes())
		}
	}
	// Random strings: about half are points.
	decoded := 0
	for range 400 {
		b := make([]byte, 32)
		rand.Read(b)
		if IsPoint(b) {
			decoded++
		}
	}
	if decoded < 120 || decoded > 280 {
		t.Fatalf("%d of 400 random encodings decoded; expected about half", decoded)
	}
	for _, n := range []int{0, 31, 33} {
		if IsPoint(make([]byte, n)) {
			t.Fatalf("%d-byte input decoded", n)
		}
	}
	// y = 2 has no x on the curve.
	two := make([]byte, 32)
	two[0] = 2
	if IsPoint(two) {
		t.Fatal("y = 2 decoded")
	}
	// Non-canonical encodings of valid points are accepted (y = p+1 ≡ 1;
	// x = 0 with the sign bit set).
	np, _ := hex.DecodeString(smallOrderHex[6])
	id := make([]byte, 32)
	id[0] = 1
	id[31] = 0x80
	if !IsPoint(np) || !IsPoint(id) {
		t.Fatal("non-canonical encodings refused")
	}
}
