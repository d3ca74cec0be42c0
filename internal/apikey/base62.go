package apikey

import (
	"hash/crc32"
	"io"
)

// alphabet is the base62 alphabet, in ASCII order.
const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62Value maps a byte to its base62 value, or -1 if the byte is not in
// the alphabet.
var base62Value = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := range len(alphabet) {
		t[alphabet[i]] = int8(i)
	}
	return t
}()

// randomBase62 fills dst with uniformly random base62 characters read from
// r. Each random byte is cut to 6 bits (0–63; 256 is a multiple of 64, so
// this is uniform), and the values 62 and 63 are rejected: no modulo bias.
func randomBase62(r io.Reader, dst []byte) error {
	var buf [64]byte
	i := 0
	for i < len(dst) {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return err
		}
		for _, b := range buf {
			if b &= 63; b < 62 {
				dst[i] = alphabet[b]
				if i++; i == len(dst) {
					break
				}
			}
		}
	}
	return nil
}

// isBase62 reports whether every byte of s is in the base62 alphabet.
func isBase62[T string | []byte](s T) bool {
	for i := range len(s) {
		if base62Value[s[i]] < 0 {
			return false
		}
	}
	return true
}

// checksumLen is the width of the encoded CRC32: 62^6 > 2^32.
const checksumLen = 6

// appendChecksum appends c as checksumLen base62 digits, most significant
// first, zero-padded.
func appendChecksum(dst []byte, c uint32) []byte {
	var out [checksumLen]byte
	v := uint64(c)
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = alphabet[v%62]
		v /= 62
	}
	return append(dst, out[:]...)
}

// decodeChecksum decodes checksumLen base62 digits. The result may exceed
// 32 bits; such a value never equals a CRC32, so the key is rejected. The
// caller has checked that s is base62.
func decodeChecksum[T string | []byte](s T) uint64 {
	var v uint64
	for i := range checksumLen {
		v = v*62 + uint64(base62Value[s[i]])
	}
	return v
}

// crcTables are the tables for slicing-by-8 CRC32 (IEEE): crcTables[0] is
// the byte-at-a-time table, crcTables[k][b] the CRC of b followed by k zero
// bytes.
var crcTables = func() (t [8][256]uint32) {
	t[0] = *crc32.IEEETable
	for i := range 256 {
		c := t[0][i]
		for k := 1; k < 8; k++ {
			c = t[0][byte(c)] ^ c>>8
			t[k][i] = c
		}
	}
	return t
}()

// crc computes the CRC32 (IEEE) of s, the same value as
// crc32.ChecksumIEEE, eight bytes at a time. It is written out so that it
// works on strings and byte slices without copying or allocating: the
// standard function takes a slice and calls through a function variable,
// so a string argument would have to be copied to the heap.
func crc[T string | []byte](s T) uint32 {
	c := ^uint32(0)
	for len(s) >= 8 {
		c ^= uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		c = crcTables[0][s[7]] ^ crcTables[1][s[6]] ^ crcTables[2][s[5]] ^ crcTables[3][s[4]] ^
			crcTables[4][c>>24] ^ crcTables[5][byte(c>>16)] ^ crcTables[6][byte(c>>8)] ^ crcTables[7][byte(c)]
		s = s[8:]
	}
	for i := range len(s) {
		c = crcTables[0][byte(c)^s[i]] ^ c>>8
	}
	return ^c
}

// validChecksum reports whether key (prefix through checksum, all base62
// after bodyStart) ends with the checksum of the rest.
func validChecksum[T string | []byte](key T) bool {
	n := len(key) - checksumLen
	return uint64(crc(key[:n])) == decodeChecksum(key[n:])
}
