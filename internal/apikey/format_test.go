package apikey

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

// seededReader returns a deterministic random stream for generate, so that
// tests and fuzz targets can reproduce a key.
func seededReader(seed []byte) *rand.ChaCha8 {
	return rand.NewChaCha8(sha256.Sum256(seed))
}

// newTestKey returns a deterministic key of format f.
func newTestKey(t testing.TB, f Format, seed string) Key {
	t.Helper()
	k, err := f.generate(seededReader([]byte(seed)))
	if err != nil {
		t.Fatalf("generate(%+v): %v", f, err)
	}
	return k
}

// secretOf returns the secret part of a well-formed key.
func secretOf(k Key) string {
	start := len(k.Prefix) + 1 + len(k.Env) + 1 + IDLen
	return k.Plaintext()[start : start+SecretLen]
}

func TestGenerateParse(t *testing.T) {
	tests := []struct {
		name       string
		f          Format
		wantPrefix string
		wantEnv    string
	}{
		{"zero value", Format{}, "gk", "live"},
		{"live", Format{Env: EnvLive}, "gk", "live"},
		{"test", Format{Env: EnvTest}, "gk", "test"},
		{"custom prefix", Format{Prefix: "acme1"}, "acme1", "live"},
		{"shortest prefix", Format{Prefix: "ab", Env: EnvTest}, "ab", "test"},
		{"longest prefix", Format{Prefix: "abcdefgh"}, "abcdefgh", "live"},
		{"digit prefix", Format{Prefix: "42"}, "42", "live"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := tt.f.Generate()
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			pt := k.Plaintext()
			if want := tt.wantPrefix + "_" + tt.wantEnv + "_"; !strings.HasPrefix(pt, want) {
				t.Errorf("key starts with %q, want %q", pt[:len(want)], want)
			}
			if got, want := len(pt), len(tt.wantPrefix)+len(tt.wantEnv)+2+IDLen+SecretLen+6; got != want {
				t.Errorf("len(key) = %d, want %d", got, want)
			}
			if got := tt.f.Len(); got != len(pt) {
				t.Errorf("Len() = %d, want %d", got, len(pt))
			}
			if strings.ContainsFunc(pt[len(tt.wantPrefix)+len(tt.wantEnv)+2:], func(r rune) bool { return !strings.ContainsRune(alphabet, r) }) {
				t.Errorf("body of %s has a non-base62 character", k.Masked())
			}
			if k.Prefix != tt.wantPrefix || k.Env != tt.wantEnv || !ValidID(k.ID) {
				t.Errorf("got Prefix %q Env %q ID %q, want %q %q and a valid ID", k.Prefix, k.Env, k.ID, tt.wantPrefix, tt.wantEnv)
			}
			got, err := tt.f.Parse(pt)
			if err != nil {
				t.Fatalf("Parse(generated key): %v", err)
			}
			if got != k {
				t.Errorf("Parse = %v, want %v", got, k)
			}
			if !LooksLikeKey(pt) {
				t.Errorf("LooksLikeKey(generated key) = false, want true")
			}
		})
	}
}

func TestGenerateUnique(t *testing.T) {
	const n = 10000
	ids := make(map[string]bool, n)
	secrets := make(map[string]bool, n)
	for range n {
		k, err := Format{}.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if ids[k.ID] || secrets[secretOf(k)] {
			t.Fatalf("repeated ID or secret after %d keys", len(ids))
		}
		ids[k.ID], secrets[secretOf(k)] = true, true
	}
}

func TestGenerateRandomError(t *testing.T) {
	wantErr := errors.New("no entropy")
	_, err := Format{}.generate(iotest.ErrReader(wantErr))
	if !errors.Is(err, wantErr) {
		t.Errorf("got error %v, want one wrapping %v", err, wantErr)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		f    Format
		ok   bool
	}{
		{"zero value", Format{}, true},
		{"test", Format{Prefix: "gk", Env: "test"}, true},
		{"digits", Format{Prefix: "k9"}, true},
		{"eight chars", Format{Prefix: "abcdefgh"}, true},
		{"one char", Format{Prefix: "g"}, false},
		{"nine chars", Format{Prefix: "abcdefghi"}, false},
		{"upper case", Format{Prefix: "GK"}, false},
		{"underscore", Format{Prefix: "g_k"}, false},
		{"dash", Format{Prefix: "g-k"}, false},
		{"non-ASCII", Format{Prefix: "gé"}, false},
		{"unknown env", Format{Env: "prod"}, false},
		{"upper-case env", Format{Env: "LIVE"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.f.Validate()
			if got := err == nil; got != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok {
				return
			}
			if !errors.Is(err, ErrInvalidFormat) {
				t.Errorf("Validate() = %v, want ErrInvalidFormat", err)
			}
			if _, err := tt.f.Generate(); !errors.Is(err, ErrInvalidFormat) {
				t.Errorf("Generate() error = %v, want ErrInvalidFormat", err)
			}
			if _, err := tt.f.Parse("gk_live_x"); !errors.Is(err, ErrInvalidFormat) {
				t.Errorf("Parse() error = %v, want ErrInvalidFormat", err)
			}
		})
	}
}

// replaceAt returns s with the byte at i replaced by b.
func replaceAt(s string, i int, b byte) string {
	return s[:i] + string([]byte{b}) + s[i+1:]
}

func TestParseRejects(t *testing.T) {
	live := newTestKey(t, Format{}, "live").Plaintext()
	test := newTestKey(t, Format{Env: EnvTest}, "test").Plaintext()
	other := newTestKey(t, Format{Prefix: "acme"}, "acme").Plaintext()
	body := live[len("gk_live_"):]
	tests := []struct {
		name string
		s    string
		want error
	}{
		{"empty", "", ErrPrefix},
		{"prefix only", "gk", ErrPrefix},
		{"prefix and underscore", "gk_", ErrPrefix},
		{"other prefix", other, ErrPrefix},
		{"longer prefix", "gkx_live_" + body, ErrPrefix},
		{"upper-case prefix", "GK_live_" + body, ErrPrefix},
		{"unknown env", "gk_prod_" + body, ErrPrefix},
		{"no separator after env", "gk_live" + body, ErrPrefix},
		{"other environment", test, ErrEnv},
		{"marker only", "gk_live_", ErrLength},
		{"one short", live[:len(live)-1], ErrLength},
		{"one long", live + "0", ErrLength},
		{"trailing newline", live + "\n", ErrLength},
		{"dash in body", replaceAt(live, 20, '-'), ErrAlphabet},
		{"underscore in body", replaceAt(live, 8, '_'), ErrAlphabet},
		{"high byte in body", replaceAt(live, len(live)-1, 0xff), ErrAlphabet},
		{"NUL in ID", replaceAt(live, 9, 0), ErrAlphabet},
		{"changed ID", replaceAt(live, 8, otherChar(live[8])), ErrChecksum},
		{"changed secret", replaceAt(live, 30, otherChar(live[30])), ErrChecksum},
		{"changed checksum", replaceAt(live, len(live)-1, otherChar(live[len(live)-1])), ErrChecksum},
		{"checksum over 32 bits", live[:len(live)-6] + "zzzzzz", ErrChecksum},
		{"test key body under live", "gk_live_" + test[len("gk_test_"):], ErrChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := Format{}.Parse(tt.s)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
			if k != (Key{}) {
				t.Errorf("Parse returned %v with its error, want the zero Key", k)
			}
			if got, want := ReasonOf(err), tt.want.(Reason); got != want {
				t.Errorf("ReasonOf = %q, want %q", got, want)
			}
			if got, want := err.Error(), "apikey: "+string(tt.want.(Reason)); got != want {
				t.Errorf("error text %q, want %q (no part of the input)", got, want)
			}
			if LooksLikeKey(tt.s) && tt.want != ErrPrefix && tt.want != ErrEnv {
				t.Errorf("LooksLikeKey = true for a key rejected with %v", tt.want)
			}
		})
	}
}

// otherChar returns a base62 character different from c.
func otherChar(c byte) byte {
	if c == '0' {
		return '1'
	}
	return '0'
}

func TestParseAllocs(t *testing.T) {
	live := newTestKey(t, Format{}, "allocs").Plaintext()
	inputs := map[string]string{
		"accept":   live,
		"prefix":   "xx" + live[2:],
		"env":      newTestKey(t, Format{Env: EnvTest}, "allocs").Plaintext(),
		"length":   live[:40],
		"alphabet": replaceAt(live, 20, '-'),
		"checksum": replaceAt(live, 20, otherChar(live[20])),
	}
	for name, s := range inputs {
		t.Run(name, func(t *testing.T) {
			if got := testing.AllocsPerRun(100, func() { Format{}.Parse(s) }); got != 0 {
				t.Errorf("Parse allocates %v times, want 0", got)
			}
		})
	}
}

// TestSingleSubstitutionsRejected checks, rather than assumes, that the
// CRC32 catches every single-byte change: for many keys, every position,
// every other byte value.
func TestSingleSubstitutionsRejected(t *testing.T) {
	formats := []Format{{}, {Env: EnvTest}, {Prefix: "ab"}, {Prefix: "abcdefgh", Env: EnvTest}}
	checked := 0
	for i := range 100 {
		f := formats[i%len(formats)]
		pt := newTestKey(t, f, string(rune(i))).Plaintext()
		bodyStart := len(f.prefix()) + len(f.env()) + 2
		for pos := range len(pt) {
			for b := range 256 {
				if byte(b) == pt[pos] {
					continue
				}
				_, err := f.Parse(replaceAt(pt, pos, byte(b)))
				checked++
				if err == nil {
					t.Fatalf("key %d: changing byte %d to %q was accepted", i, pos, byte(b))
				}
				if pos >= bodyStart && base62Value[b] >= 0 && !errors.Is(err, ErrChecksum) {
					t.Fatalf("key %d: changing body byte %d to %q: got %v, want ErrChecksum", i, pos, byte(b), err)
				}
			}
		}
	}
	t.Logf("%d single-byte substitutions, all rejected", checked)
}

func TestAdjacentTranspositionsRejected(t *testing.T) {
	for i := range 200 {
		pt := newTestKey(t, Format{}, string(rune(i))).Plaintext()
		for pos := range len(pt) - 1 {
			if pt[pos] == pt[pos+1] {
				continue
			}
			s := pt[:pos] + string([]byte{pt[pos+1], pt[pos]}) + pt[pos+2:]
			if _, err := (Format{}).Parse(s); err == nil {
				t.Fatalf("key %d: swapping bytes %d and %d was accepted", i, pos, pos+1)
			}
		}
	}
}

func TestCRCMatchesStdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 200 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		want := crc32.ChecksumIEEE(b)
		if got := crc(b); got != want {
			t.Fatalf("crc([]byte of %d) = %08x, want %08x", n, got, want)
		}
		if got := crc(string(b)); got != want {
			t.Fatalf("crc(string of %d) = %08x, want %08x", n, got, want)
		}
	}
}

func TestChecksumEncoding(t *testing.T) {
	tests := []struct {
		c    uint32
		want string
	}{
		{0, "000000"},
		{1, "000001"},
		{61, "00000z"},
		{62, "000010"},
		{math.MaxUint32, "4gfFC3"},
	}
	for _, tt := range tests {
		got := string(appendChecksum(nil, tt.c))
		if got != tt.want {
			t.Errorf("appendChecksum(%d) = %q, want %q", tt.c, got, tt.want)
		}
		if back := decodeChecksum(got); back != uint64(tt.c) {
			t.Errorf("decodeChecksum(%q) = %d, want %d", got, back, tt.c)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		c := r.Uint32()
		if back := decodeChecksum(appendChecksum(nil, c)); back != uint64(c) {
			t.Fatalf("round trip of %d gave %d", c, back)
		}
	}
}

// TestRandomBase62Exact feeds every byte value once: rejection sampling
// must turn them into exactly four of each base62 character (modulo 62
// would give eight characters five times).
func TestRandomBase62Exact(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	dst := make([]byte, 248) // 256 bytes, minus the 8 that map to 62 or 63
	if err := randomBase62(bytes.NewReader(all), dst); err != nil {
		t.Fatal(err)
	}
	counts := map[byte]int{}
	for _, c := range dst {
		counts[c]++
	}
	for i := range len(alphabet) {
		if got := counts[alphabet[i]]; got != 4 {
			t.Errorf("character %q appeared %d times, want 4", alphabet[i], got)
		}
	}
}

// TestRandomBase62Uniform checks generated secrets with a chi-squared test
// and measures their entropy per character.
func TestRandomBase62Uniform(t *testing.T) {
	const keys = 20000
	var counts [62]int
	total := 0
	for range keys {
		k, err := Format{}.Generate()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []byte(k.ID + secretOf(k)) {
			counts[base62Value[c]]++
			total++
		}
	}
	expected := float64(total) / 62
	chi2, entropy := 0.0, 0.0
	for _, c := range counts {
		d := float64(c) - expected
		chi2 += d * d / expected
		p := float64(c) / float64(total)
		entropy -= p * math.Log2(p)
	}
	// 61 degrees of freedom: P(chi2 > 130) is about 1e-6.
	if chi2 > 130 {
		t.Errorf("chi-squared = %.1f over %d characters, want < 130 (uniform)", chi2, total)
	}
	if want := math.Log2(62) - 0.001; entropy < want {
		t.Errorf("entropy = %.5f bits per character, want >= %.5f", entropy, want)
	}
	secretBits := SecretLen * entropy
	if secretBits < 160 || secretBits-32 < 158 {
		t.Errorf("secret has %.1f bits (%.1f with the checksum known), want >= 160 (158)", secretBits, secretBits-32)
	}
	t.Logf("chi-squared %.1f, %.5f bits/char, secret %.1f bits", chi2, entropy, secretBits)
}

func TestLooksLikeKey(t *testing.T) {
	live := newTestKey(t, Format{}, "a").Plaintext()
	tests := []struct {
		name string
		s    string
		want bool
	}{
		{"live", live, true},
		{"test", newTestKey(t, Format{Env: EnvTest}, "b").Plaintext(), true},
		{"short prefix", newTestKey(t, Format{Prefix: "ab"}, "c").Plaintext(), true},
		{"long prefix", newTestKey(t, Format{Prefix: "abcdefgh"}, "d").Plaintext(), true},
		{"empty", "", false},
		{"bad checksum", replaceAt(live, 30, otherChar(live[30])), false},
		{"upper-case prefix", "GK" + live[2:], false},
		{"unknown env", "gk_prod" + live[7:], false},
		{"trailing space", live + " ", false},
		{"truncated", live[:len(live)-1], false},
		{"prefix too long", "abcdefghi" + live[2:], false},
		{"non-base62", replaceAt(live, 30, '.'), false},
		{"ID only", live[8:20], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LooksLikeKey(tt.s); got != tt.want {
				t.Errorf("LooksLikeKey = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"0123456789Az", true},
		{"0123456789A", false},
		{"0123456789Azz", false},
		{"0123456789A_", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}
