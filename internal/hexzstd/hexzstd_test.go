package hexzstd

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// page returns n PLAIN values of 64 random hex digits.
func page(rng *rand.Rand, n int) []byte {
	var p []byte
	var raw [32]byte
	for range n {
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		p = binary.LittleEndian.AppendUint32(p, 64)
		p = hex.AppendEncode(p, raw[:])
	}
	return p
}

func TestAppendReadByZstd(t *testing.T) {
	d, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{16, 17, 31, 1000, 1926, 1927, 1928, 1929, 3853, 3854, 3855, 10000} {
		p := page(rng, n)
		f, ok := Append(nil, p)
		if !ok {
			t.Fatalf("%d values: not written", n)
		}
		got, err := d.DecodeAll(f, nil)
		if err != nil {
			t.Fatalf("%d values: %v", n, err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("%d values: decoded to other bytes", n)
		}
		t.Logf("%d values: %d -> %d bytes (%.3f)", n, len(p), len(f), float64(len(f))/float64(len(p)))
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{16, 17, 31, 1000, 1926, 1927, 1928, 1929, 3853, 3854, 3855, 10000} {
		p := page(rng, n)
		f, _ := Append(nil, p)
		got, ok := Decode(nil, f, len(p))
		if !ok || !bytes.Equal(got, p) {
			t.Fatalf("%d values: Decode %v, equal %v", n, ok, bytes.Equal(got, p))
		}
		// Appended after what dst holds, with or without room.
		pre := []byte("prefix")
		got, ok = Decode(pre, f, len(p))
		if !ok || string(got[:6]) != "prefix" || !bytes.Equal(got[6:], p) {
			t.Fatalf("%d values: Decode after a prefix failed", n)
		}
		got, ok = Decode(make([]byte, 3, 3+len(p)), f, len(p))
		if !ok || !bytes.Equal(got[3:], p) {
			t.Fatalf("%d values: Decode into room failed", n)
		}
		// More than limit: refused, dst unchanged.
		if got, ok := Decode(pre, f, len(p)-1); ok || string(got) != "prefix" {
			t.Fatalf("%d values: content over the limit accepted", n)
		}
	}
}

func TestAppendRefusesOtherPages(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	good := page(rng, 20)
	cases := map[string][]byte{
		"too few values":   good[:15*68],
		"partial value":    good[:len(good)-1],
		"upper-case digit": bytes.Replace(good, []byte("a"), []byte("A"), 1),
		"other length":     append(binary.LittleEndian.AppendUint32(nil, 63), good[4:]...),
		"empty":            nil,
	}
	for name, p := range cases {
		if out, ok := Append([]byte("x"), p); ok || string(out) != "x" {
			t.Errorf("%s: written (%v)", name, ok)
		}
	}
}

// TestDecodeAcceptsOnlyWhatZstdReads mutates frames: a byte changed, bytes
// removed, inserted or cut off. Whatever Decode accepts, klauspost's zstd
// decoder must decode to the same bytes.
func TestDecodeAcceptsOnlyWhatZstdReads(t *testing.T) {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	var frames [][]byte
	for _, n := range []int{16, 40, 1930} {
		f, _ := Append(nil, page(rng, n))
		frames = append(frames, f)
	}
	accepted := 0
	for i := range 6000 {
		f := mutate(rng, frames[i%len(frames)])
		got, ok := Decode(nil, f, 1<<20)
		if !ok {
			continue
		}
		accepted++
		want, err := d.DecodeAll(f, nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("mutation %d accepted, zstd says %v, equal %v", i, err, bytes.Equal(got, want))
		}
	}
	// Changes to digits keep the shape: some must be accepted, or the
	// test compares nothing.
	if accepted == 0 {
		t.Fatal("no mutated frame accepted")
	}
	t.Logf("%d of 6000 mutated frames accepted", accepted)
}

func mutate(rng *rand.Rand, f []byte) []byte {
	f = bytes.Clone(f)
	// Half of the changes hit the frame's structure: its first bytes (the
	// headers, the table), its last (the sequences, the end marks).
	i := rng.IntN(len(f))
	if rng.IntN(2) == 0 {
		i = rng.IntN(100)
		if rng.IntN(2) == 0 {
			i = len(f) - 1 - i
		}
	}
	switch rng.IntN(5) {
	case 0, 1:
		f[i] ^= byte(1 << rng.IntN(8))
	case 2:
		f[i] = byte(rng.Uint32())
	case 3:
		f = append(f[:i], f[min(len(f), i+1+rng.IntN(4)):]...)
	default:
		f = append(f[:i], append([]byte{byte(rng.Uint32())}, f[i:]...)...)
	}
	return f
}

func FuzzDecode(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{16, 17, 1928} {
		fr, _ := Append(nil, page(rng, n))
		f.Add(fr)
	}
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, fr []byte) {
		got, ok := Decode(nil, fr, 1<<20)
		if !ok {
			return
		}
		want, err := d.DecodeAll(fr, nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("accepted, zstd says %v, equal %v", err, bytes.Equal(got, want))
		}
	})
}

// BenchmarkDecode decodes a page of 3,800 values (the writer's pages are
// about 256 KiB) with Decode and, side by side, with klauspost's zstd
// decoder, and the page as zstd's own encoder would write it.
//
//	go test -run '^$' -bench . ./internal/hexzstd/
func BenchmarkDecode(b *testing.B) {
	p := page(rand.New(rand.NewPCG(11, 12)), 3800)
	f, _ := Append(nil, p)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithAllLitEntropyCompression(true))
	if err != nil {
		b.Fatal(err)
	}
	general := enc.EncodeAll(p, nil)
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, len(p))
	b.Run("hexzstd", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if _, ok := Decode(dst, f, len(p)); !ok {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("zstd-same-frame", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if _, err := d.DecodeAll(f, dst); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("zstd-own-frame", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if _, err := d.DecodeAll(general, dst); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Logf("frame %d bytes, zstd's own %d, page %d", len(f), len(general), len(p))
}

// BenchmarkAppend writes the same page.
func BenchmarkAppend(b *testing.B) {
	p := page(rand.New(rand.NewPCG(11, 12)), 3800)
	dst := make([]byte, 0, len(p))
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if _, ok := Append(dst, p); !ok {
			b.Fatal("not written")
		}
	}
}

// TestHexRev checks hexRev (SSSE3 where the CPU has it) against
// hex.Encode of the reversed bytes, for every length up to 100.
func TestHexRev(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for n := range 101 {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		rev := bytes.Clone(src)
		slices.Reverse(rev)
		got := make([]byte, 2*n)
		hexRev(got, src)
		if want := hex.EncodeToString(rev); string(got) != want {
			t.Fatalf("%d bytes: %s, want %s", n, got, want)
		}
		hexRevGeneric(got, src)
		if want := hex.EncodeToString(rev); string(got) != want {
			t.Fatalf("%d bytes (generic): %s, want %s", n, got, want)
		}
	}
}

// TestReferenceDecoder decodes Append's frames with the reference zstd
// implementation (the zstd command: libzstd, as in DuckDB and Athena) when
// it is installed; under CI=true it must be.
func TestReferenceDecoder(t *testing.T) {
	zstdCmd, err := exec.LookPath("zstd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the reference zstd command is needed under CI=true: %v", err)
		}
		t.Skip("no zstd command")
	}
	rng := rand.New(rand.NewPCG(15, 16))
	dir := t.TempDir()
	for _, n := range []int{16, 17, 1000, 1926, 1927, 1928, 3855, 10000} {
		p := page(rng, n)
		f, ok := Append(nil, p)
		if !ok {
			t.Fatalf("%d values: not written", n)
		}
		name := filepath.Join(dir, "page.zst")
		if err := os.WriteFile(name, f, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := exec.Command(zstdCmd, "-d", "-c", name).Output()
		if err != nil {
			t.Fatalf("%d values: zstd -d: %v", n, err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("%d values: zstd -d gives other bytes", n)
		}
	}
}
