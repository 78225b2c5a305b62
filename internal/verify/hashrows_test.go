package verify

import (
	"encoding/hex"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHashRowsValueLengths: rows whose values have every length class of
// the encoding (1 to 5 digits, NULL, empty), some too long for a block
// slot, mixed in blocks, verify clean; and a change in any of them is a
// hash_mismatch of that row only.
func TestHashRowsValueLengths(t *testing.T) {
	// Blocks 0 and 1 (rows 0 to 63) fit their slots; block 2 does not.
	fit := []int{0, 1, 9, 10, 99, 100, 101, 999, 1000, 1500}
	long := []int{1975, 2000, 4096, 70000}
	es := buildChain("replica-0", 2*rowBlock+20)
	for i := range es {
		e := &es[i]
		n := fit[i%len(fit)]
		if i >= 2*rowBlock {
			n = append(fit, long...)[i%(len(fit)+len(long))]
		}
		v := strings.Repeat(string(rune('a'+i%26)), n)
		switch i % 3 {
		case 0:
			e.Reasoning = &v
		case 1:
			e.Attributes = v
		default:
			e.TargetResource, e.ProposedValue = v, nil
		}
	}
	rehash(es)
	data, err := encode(es)
	require.NoError(t, err)
	const key = "dt=2026-03-09/replica-0-00000000000000000000.parquet"
	res := readTwice(t, key, data)
	require.Empty(t, res.violations)
	require.Equal(t, int64(len(es)), res.rows)

	for _, i := range []int{0, 5, 13, 14, 27, 40, 63, 64, 70, 83} {
		bad := append(es[:0:0], es...)
		bad[i].TargetSystem += "x"
		data, err := encode(bad)
		require.NoError(t, err)
		res := readTwice(t, key, data)
		require.Len(t, res.violations, 1, "row %d", i)
		assert.Equal(t, HashMismatch, res.violations[0].Kind)
		assert.Equal(t, int64(i), res.violations[0].Seq)
	}
}

// TestAppendIntField: the encoding of an integer field is its decimal
// digits as a string, for all magnitudes and signs.
func TestAppendIntField(t *testing.T) {
	vals := []int64{0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 12345, 1773048600048148113, math.MaxInt64, -1, -10, math.MinInt64}
	for p := int64(1); p > 0 && p <= math.MaxInt64/10; p *= 10 {
		vals = append(vals, p-1, p, p+1, 7*p)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 1000 {
		vals = append(vals, rng.Int64()>>rng.IntN(63))
	}
	for _, v := range vals {
		c := column{ints: []int64{v}, null: []bool{false}}
		s := strconv.FormatInt(v, 10)
		assert.Equal(t, strconv.Itoa(len(s))+":"+s, string(appendIntField([]byte("x"), &c, 0)[1:]), "%d", v)
	}
	c := column{ints: []int64{0}, null: []bool{true}}
	assert.Equal(t, "-", string(appendIntField(nil, &c, 0)))
}

// TestHexEncode: hexEncode is hex.EncodeToString for random hashes and
// every byte value.
func TestHexEncode(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for n := range 300 {
		var sum [32]byte
		for i := range sum {
			sum[i] = byte(rng.Uint32())
			if n < 256/32*8 {
				sum[i] = byte(n*32 + i)
			}
		}
		var hx [64]byte
		hexEncode(&hx, &sum)
		require.Equal(t, hex.EncodeToString(sum[:]), string(hx[:]))
	}
}
