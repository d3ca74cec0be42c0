package guard_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/guard"
	"github.com/gatehouse-dev/gatehouse/token"
)

// A resource server: JWT access tokens from the issuer (keys discovered from
// its metadata) and Gatehouse API keys, with a policy per route.
func ExampleNew() {
	keys, err := guard.NewHTTPKeyVerifier(guard.HTTPKeyVerifierConfig{
		URL:   "https://auth.example.com" + guard.DefaultVerifyPath,
		Token: os.Getenv("GATEHOUSE_SERVICE_TOKEN"),
	})
	if err != nil {
		log.Fatal(err)
	}
	g, err := guard.New(guard.Config{
		Issuer:   "https://auth.example.com",
		Audience: "https://api.example.com",
		APIKeys:  keys,
	})
	if err != nil {
		log.Fatal(err)
	}
	read := g.Require(guard.Policy{AllOf: []string{"invoices:read"}})
	write := g.Require(guard.Policy{Kinds: []token.Kind{token.KindJWT}, AllOf: []string{"invoices:write"}})

	mux := http.NewServeMux()
	mux.Handle("GET /invoices", read(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := guard.PrincipalFrom(r.Context())
		fmt.Fprintf(w, "invoices of %s\n", p.Subject)
	})))
	mux.Handle("POST /invoices", write(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})))
	log.Fatal(http.ListenAndServe(":8080", mux))
}

// The guard in action, with the issuer's key given directly.
func Example() {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key := token.SigningKey{ID: "k1", Algorithm: token.ES256, Signer: priv}
	issuer, _ := token.NewIssuer(token.IssuerConfig{
		Issuer: "https://auth.example.com",
		Key:    func() (token.SigningKey, error) { return key, nil },
	})
	keySet, _ := token.NewStaticKeySet(key.Public())

	g, err := guard.New(guard.Config{
		Issuer:   "https://auth.example.com",
		Audience: "https://api.example.com",
		Keys:     keySet, // in production: discovered from the Issuer
	})
	if err != nil {
		log.Fatal(err)
	}
	h := g.Require(guard.Policy{AllOf: []string{"invoices:read"}})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := guard.PrincipalFrom(r.Context())
			fmt.Fprintf(w, "hello %s", p.Subject)
		}))

	send := func(scope string) {
		raw, _, _ := issuer.Issue(token.Claims{
			Subject: "user-42", ClientID: "billing-app", Scope: scope,
			Audience:  token.Audience{"https://api.example.com"},
			ExpiresAt: time.Now().Add(time.Minute).Unix(),
		})
		req := httptest.NewRequest("GET", "/invoices", nil)
		req.Header.Set("Authorization", "Bearer "+raw)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"), strings.TrimSpace(rec.Body.String()))
	}
	send("invoices:read")
	send("profile")

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/invoices", nil))
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	// Output:
	// 200  hello user-42
	// 403 Bearer realm="api", error="insufficient_scope", scope="invoices:read" {"error":"insufficient_scope"}
	// 401 Bearer realm="api"
}
