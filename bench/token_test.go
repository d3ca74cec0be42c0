package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	gjwt "github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	jwxjwt "github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/gatehouse-dev/gatehouse/token"
)

const (
	issuer   = "https://auth.example.com"
	audience = "https://api.example.com"
	leeway   = 30 * time.Second
)

// setup is one key and one access token signed with it by token.Issuer.
type setup struct {
	alg    token.Algorithm
	key    token.SigningKey
	pub    crypto.PublicKey
	raw    string
	signed []byte // the JWS signing input
	sig    []byte // the decoded signature
}

func newSetup(b *testing.B, alg token.Algorithm) setup {
	b.Helper()
	var signer crypto.Signer
	var err error
	switch alg {
	case token.ES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case token.EdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		b.Fatal(err)
	}
	key := token.SigningKey{ID: "k1", Algorithm: alg, Signer: signer}
	iss, err := token.NewIssuer(token.IssuerConfig{Issuer: issuer, Key: func() (token.SigningKey, error) { return key, nil }})
	if err != nil {
		b.Fatal(err)
	}
	raw, _, err := iss.Issue(token.Claims{
		Subject:   "user-1234",
		ClientID:  "client-abc",
		Audience:  token.Audience{audience},
		Scope:     "invoices:read invoices:write",
		ExpiresAt: time.Now().Add(time.Hour).Unix(),
	})
	if err != nil {
		b.Fatal(err)
	}
	i := strings.LastIndexByte(raw, '.')
	sig, err := base64.RawURLEncoding.DecodeString(raw[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	return setup{alg: alg, key: key, pub: signer.Public(), raw: raw, signed: []byte(raw[:i]), sig: sig}
}

var algs = []token.Algorithm{token.ES256, token.EdDSA}

// BenchmarkVerify verifies the same token with each library, asking each to
// check the signature with the algorithm pinned, "iss", "aud" and "exp"
// with 30 s leeway, and to decode "client_id" and "scope". Bare is only the
// standard library's hashing and signature check, the floor for all of them.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range algs {
		s := newSetup(b, alg)
		b.Run(string(alg)+"/bare", func(b *testing.B) {
			bare := s.bare(b)
			b.ReportAllocs()
			for b.Loop() {
				if !bare() {
					b.Fatal("invalid")
				}
			}
		})
		b.Run(string(alg)+"/gatehouse", func(b *testing.B) {
			v := s.gatehouse(b, nil)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), s.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"/golang-jwt", func(b *testing.B) {
			p := gjwt.NewParser(gjwt.WithValidMethods([]string{string(alg)}), gjwt.WithIssuer(issuer),
				gjwt.WithAudience(audience), gjwt.WithExpirationRequired(), gjwt.WithIssuedAt(), gjwt.WithLeeway(leeway))
			keyFunc := func(*gjwt.Token) (any, error) { return s.pub, nil }
			b.ReportAllocs()
			for b.Loop() {
				var c gjwtClaims
				if _, err := p.ParseWithClaims(s.raw, &c, keyFunc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"/go-jose", func(b *testing.B) {
			algs := []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)}
			b.ReportAllocs()
			for b.Loop() {
				t, err := josejwt.ParseSigned(s.raw, algs)
				if err != nil {
					b.Fatal(err)
				}
				var c josejwt.Claims
				var extra extraClaims
				if err := t.Claims(s.pub, &c, &extra); err != nil {
					b.Fatal(err)
				}
				if err := c.ValidateWithLeeway(josejwt.Expected{Issuer: issuer, AnyAudience: josejwt.Audience{audience}, Time: time.Now()}, leeway); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"/jwx", func(b *testing.B) {
			key, err := jwk.Import(s.pub)
			if err != nil {
				b.Fatal(err)
			}
			a := jwa.ES256()
			if alg == token.EdDSA {
				a = jwa.EdDSA()
			}
			b.ReportAllocs()
			for b.Loop() {
				t, err := jwxjwt.Parse([]byte(s.raw), jwxjwt.WithKey(a, key), jwxjwt.WithIssuer(issuer),
					jwxjwt.WithAudience(audience), jwxjwt.WithAcceptableSkew(leeway))
				if err != nil {
					b.Fatal(err)
				}
				var clientID, scope string
				if err := t.Get("client_id", &clientID); err != nil {
					b.Fatal(err)
				}
				if err := t.Get("scope", &scope); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type extraClaims struct {
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
}

type gjwtClaims struct {
	gjwt.RegisteredClaims
	extraClaims
}

// BenchmarkVerifyCached is a token.Verifier answering from its cache.
func BenchmarkVerifyCached(b *testing.B) {
	s := newSetup(b, token.ES256)
	v := s.gatehouse(b, token.NewCache(10000))
	if _, err := v.Verify(context.Background(), s.raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), s.raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssue signs an access token; bare is sha256 and ecdsa.SignASN1
// of a signing input of the same length.
func BenchmarkIssue(b *testing.B) {
	s := newSetup(b, token.ES256)
	b.Run("ES256/bare", func(b *testing.B) {
		bare := s.bareSign(b)
		b.ReportAllocs()
		for b.Loop() {
			bare()
		}
	})
	b.Run("ES256/gatehouse", func(b *testing.B) {
		issue := s.issue(b)
		b.ReportAllocs()
		for b.Loop() {
			issue()
		}
	})
}

// BenchmarkRatio runs gatehouse and the bare operation alternately in one
// loop, timing each call, and reports the ratio of the median times as
// "x-bare". On a shared machine both see the same interference and the
// median ignores calls that were preempted, so the ratio is steadier than
// one computed from two separate benchmarks.
func BenchmarkRatio(b *testing.B) {
	for _, alg := range algs {
		s := newSetup(b, alg)
		b.Run("Verify"+string(alg), func(b *testing.B) {
			v := s.gatehouse(b, nil)
			ours := func() {
				if _, err := v.Verify(context.Background(), s.raw); err != nil {
					b.Fatal(err)
				}
			}
			bare := s.bare(b)
			paired(b, ours, func() { bare() })
		})
	}
	s := newSetup(b, token.ES256)
	b.Run("IssueES256", func(b *testing.B) {
		paired(b, s.issue(b), s.bareSign(b))
	})
}

func paired(b *testing.B, ours, bare func()) {
	var tOurs, tBare []time.Duration
	i := 0
	for b.Loop() {
		i++
		first, second, t1, t2 := ours, bare, &tOurs, &tBare
		if i%2 == 0 {
			first, second, t1, t2 = bare, ours, &tBare, &tOurs
		}
		t0 := time.Now()
		first()
		m := time.Now()
		second()
		e := time.Now()
		*t1 = append(*t1, m.Sub(t0))
		*t2 = append(*t2, e.Sub(m))
	}
	mo, mb := median(tOurs), median(tBare)
	b.ReportMetric(float64(mo)/float64(mb), "x-bare")
	b.ReportMetric(float64(mo.Nanoseconds()), "ns-median")
	b.ReportMetric(float64(mb.Nanoseconds()), "ns-bare-median")
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

func (s setup) gatehouse(b *testing.B, cache *token.Cache) *token.Verifier {
	keys, err := token.NewStaticKeySet(s.key.Public())
	if err != nil {
		b.Fatal(err)
	}
	v, err := token.NewVerifier(token.VerifierConfig{Issuer: issuer, Audience: audience, Keys: keys, Leeway: leeway, Cache: cache})
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// bare returns the standard library's check of s's signature: SHA-256 and
// ecdsa.VerifyASN1 (with the DER signature prepared in advance), or
// ed25519.Verify.
func (s setup) bare(b *testing.B) func() bool {
	switch pub := s.pub.(type) {
	case *ecdsa.PublicKey:
		der := toDER(s.sig)
		return func() bool {
			h := sha256.Sum256(s.signed)
			return ecdsa.VerifyASN1(pub, h[:], der)
		}
	case ed25519.PublicKey:
		return func() bool { return ed25519.Verify(pub, s.signed, s.sig) }
	}
	b.Fatalf("unexpected key %T", s.pub)
	return nil
}

func (s setup) bareSign(b *testing.B) func() {
	priv := s.key.Signer.(*ecdsa.PrivateKey)
	return func() {
		h := sha256.Sum256(s.signed)
		if _, err := ecdsa.SignASN1(rand.Reader, priv, h[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func (s setup) issue(b *testing.B) func() {
	iss, err := token.NewIssuer(token.IssuerConfig{Issuer: issuer, Key: func() (token.SigningKey, error) { return s.key, nil }})
	if err != nil {
		b.Fatal(err)
	}
	c := token.Claims{
		Subject: "user-1234", ClientID: "client-abc", Audience: token.Audience{audience},
		Scope: "invoices:read invoices:write", ExpiresAt: time.Now().Add(time.Hour).Unix(),
	}
	return func() {
		if _, _, err := iss.Issue(c); err != nil {
			b.Fatal(err)
		}
	}
}

// toDER encodes a 64-byte r||s signature as ASN.1 DER.
func toDER(sig []byte) []byte {
	integer := func(v []byte) []byte {
		for len(v) > 1 && v[0] == 0 {
			v = v[1:]
		}
		if v[0]&0x80 != 0 {
			v = append([]byte{0}, v...)
		}
		return append([]byte{0x02, byte(len(v))}, v...)
	}
	body := append(integer(sig[:32]), integer(sig[32:])...)
	return append([]byte{0x30, byte(len(body))}, body...)
}
