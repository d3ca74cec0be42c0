package apikey

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

var parseReasons = map[Reason]bool{
	ReasonWrongPrefix: true, ReasonWrongEnv: true, ReasonWrongLength: true,
	ReasonInvalidChar: true, ReasonBadChecksum: true,
}

// FuzzParse checks that Parse never panics, that whatever it accepts
// re-serialises to itself, that its errors carry a Parse reason and nothing
// of the input, and that it agrees with LooksLikeKey.
func FuzzParse(f *testing.F) {
	for i, fm := range []Format{{}, {Env: EnvTest}, {Prefix: "acme"}, {Prefix: "abcdefgh"}} {
		k := newTestKey(f, fm, string(rune(i)))
		pt := k.Plaintext()
		f.Add(pt)
		f.Add(replaceAt(pt, len(pt)-3, otherChar(pt[len(pt)-3])))
		f.Add(pt[:len(pt)-1])
	}
	f.Add("")
	f.Add("gk_live_")
	f.Add("gk_test_" + strings.Repeat("z", bodyLen))
	f.Fuzz(func(t *testing.T, s string) {
		for _, fm := range []Format{{}, {Env: EnvTest}, {Prefix: "acme"}} {
			k, err := fm.Parse(s)
			if err != nil {
				r := ReasonOf(err)
				if !parseReasons[r] {
					t.Fatalf("Parse error %v has reason %q, want one of Parse's", err, r)
				}
				if got, want := err.Error(), "apikey: "+string(r); got != want {
					t.Fatalf("error text %q, want %q", got, want)
				}
				if k != (Key{}) {
					t.Fatalf("Parse returned %v with an error, want the zero Key", k)
				}
				continue
			}
			if k.Plaintext() != s {
				t.Fatalf("Plaintext() differs from the parsed input")
			}
			again := Format{Prefix: k.Prefix, Env: k.Env}.assemble(k.ID, secretOf(k))
			if again.Plaintext() != s {
				t.Fatalf("re-assembled key %v differs from the input", again)
			}
			if !LooksLikeKey(s) {
				t.Fatalf("Parse accepted %v but LooksLikeKey = false", k)
			}
		}
		if LooksLikeKey(s) {
			n := strings.IndexByte(s, '_')
			fm := Format{Prefix: s[:n], Env: s[n+1 : n+1+envLen]}
			if _, err := fm.Parse(s); err != nil {
				t.Fatalf("LooksLikeKey = true but %+v.Parse: %v", fm, err)
			}
		}
	})
}

// FuzzMutation checks that generated keys always parse and that every
// single-byte change of one is rejected.
func FuzzMutation(f *testing.F) {
	f.Add([]byte("seed"), uint16(0), byte('x'))
	f.Add([]byte("seed"), uint16(40), byte('0'))
	f.Add([]byte{}, uint16(57), byte(0))
	f.Fuzz(func(t *testing.T, seed []byte, pos uint16, b byte) {
		fm := Format{Env: []string{EnvLive, EnvTest}[len(seed)%2]}
		k, err := fm.generate(seededReader(seed))
		if err != nil {
			t.Fatal(err)
		}
		pt := k.Plaintext()
		if _, err := fm.Parse(pt); err != nil {
			t.Fatalf("generated key rejected: %v", err)
		}
		i := int(pos) % len(pt)
		if pt[i] == b {
			return
		}
		if _, err := fm.Parse(replaceAt(pt, i, b)); err == nil {
			t.Fatalf("changing byte %d to %q was accepted", i, b)
		}
	})
}

// FuzzScanReader checks that the scanner never panics, agrees with the
// reference scanner on any input and buffer size, and finds a key planted at
// any offset.
func FuzzScanReader(f *testing.F) {
	key := newTestKey(f, Format{}, "planted")
	f.Add([]byte("hello\nworld"), uint32(3), uint16(0), true)
	f.Add([]byte(strings.Repeat("_live_", 50)), uint32(100), uint16(7), false)
	f.Add([]byte(strings.Repeat("abc\n", 100)), uint32(130), uint16(1), true)
	f.Add([]byte(key.Plaintext()+"\n"+key.Plaintext()), uint32(60), uint16(3), true)
	f.Fuzz(func(t *testing.T, data []byte, at uint32, bufSize uint16, anyPrefix bool) {
		i := int(at % uint32(len(data)+1))
		planted := slices.Concat(data[:i], []byte(key.Plaintext()), data[i:])
		s := &Scanner{bufSize: minBufSize + int(bufSize%1024)}
		if !anyPrefix {
			s.Prefixes = []string{"gk"}
		}
		got := hitsOf(scanAll(t, s, bytes.NewReader(planted)))
		want := referenceScan(planted, s.Prefixes)
		if !slices.Equal(got, want) {
			t.Fatalf("findings %+v, want %+v", got, want)
		}
		if !slices.ContainsFunc(got, func(h hitOf) bool { return h.Offset == int64(i) && h.ID == key.ID }) {
			t.Fatalf("planted key at %d not found in %+v", i, got)
		}
		if anyPrefix {
			keys := FindIn(string(planted))
			if len(keys) != len(got) {
				t.Fatalf("FindIn found %d keys, the scanner %d", len(keys), len(got))
			}
			for j, k := range keys {
				if h := got[j]; !strings.HasPrefix(string(planted[h.Offset:]), k) || !strings.HasPrefix(k, h.Prefix+"_"+h.Env+"_"+h.ID) {
					t.Fatalf("FindIn key %d is not the scanner's finding %+v", j, h)
				}
			}
		}
	})
}
