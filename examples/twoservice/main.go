// Command twoservice is the README's two-service example: two resource
// servers behind `gatehouse gateway`.
//
//	caller ──(JWT, opaque token or API key)──► gatehouse gateway
//	        ──(internal JWT, aud = service A)──► service A
//	        ──(token exchange at Gatehouse: new JWT, aud = service B, act = A)──► service B
//
// Service A accepts only the gateway's internal JWTs (audience
// http://a.internal). To call service B on the caller's behalf it exchanges
// the token it received for one meant for B (RFC 8693), authenticating as
// its own client; Gatehouse narrows the scopes and records A in the "act"
// claim. Service B accepts only tokens for http://b.internal and answers
// with who called, through whom.
//
//	go run ./examples/twoservice b -listen 127.0.0.1:9002 -issuer http://127.0.0.1:8080
//	go run ./examples/twoservice a -listen 127.0.0.1:9001 -issuer http://127.0.0.1:8080 \
//	    -b http://127.0.0.1:9002 -client-id ID   (secret in SERVICE_A_CLIENT_SECRET)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/guard"
	"github.com/gatehouse-dev/gatehouse/token"
)

// The services' identifiers: the "aud" of the tokens each accepts.
const (
	AudienceA = "http://a.internal"
	AudienceB = "http://b.internal"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "a" && os.Args[1] != "b") {
		fmt.Fprintln(os.Stderr, "usage: twoservice a|b -listen ADDR -issuer URL [-b URL -client-id ID]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	issuer := fs.String("issuer", "http://127.0.0.1:8080", "Gatehouse's issuer URL")
	bURL := fs.String("b", "", "service B's URL (service A only)")
	clientID := fs.String("client-id", "", "service A's client (secret in SERVICE_A_CLIENT_SECRET)")
	fs.Parse(os.Args[2:])

	var h http.Handler
	var err error
	switch os.Args[1] {
	case "a":
		h, err = ServiceA(AConfig{Issuer: *issuer, BURL: *bURL, ClientID: *clientID,
			ClientSecret: os.Getenv("SERVICE_A_CLIENT_SECRET")})
	case "b":
		h, err = ServiceB(*issuer)
	}
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

// Reply is what service B answers and service A passes on.
type Reply struct {
	Service  string   `json:"service"`
	Subject  string   `json:"sub"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
	Kind     string   `json:"kind"`
	Actors   []string `json:"actors"` // the "act" chain, nearest first
	Via      *Reply   `json:"via,omitempty"`
}

func reply(service string, p token.Principal) Reply {
	r := Reply{Service: service, Subject: p.Subject, ClientID: p.ClientID, Scopes: p.Scopes, Kind: string(p.Kind)}
	for a := p.Actor; a != nil; a = a.Actor {
		r.Actors = append(r.Actors, a.Subject)
	}
	return r
}

// ServiceB is a resource server that accepts JWTs for AudienceB with the
// "orders:read" scope.
func ServiceB(issuer string) (http.Handler, error) {
	g, err := guard.New(guard.Config{Issuer: issuer, Audience: AudienceB})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /orders", g.Require(guard.Policy{AllOf: []string{"orders:read"}})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := guard.PrincipalFrom(r.Context())
			writeJSON(w, reply("b", p))
		})))
	return mux, nil
}

// AConfig configures ServiceA.
type AConfig struct {
	Issuer                 string
	BURL                   string // service B
	ClientID, ClientSecret string // service A's own client (token-exchange grant)
	HTTPClient             *http.Client
}

// ServiceA is a resource server behind the gateway: it accepts the
// gateway's internal JWTs (audience AudienceA) and calls service B with a
// token exchanged for AudienceB.
func ServiceA(cfg AConfig) (http.Handler, error) {
	g, err := guard.New(guard.Config{Issuer: cfg.Issuer, Audience: AudienceA})
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /orders", g.Require(guard.Policy{Kinds: []token.Kind{token.KindJWT}, AllOf: []string{"orders:read"}})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := guard.PrincipalFrom(r.Context())
			incoming := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			tok, err := exchange(r.Context(), hc, cfg, incoming)
			if err != nil {
				log.Printf("service a: token exchange: %v", err)
				http.Error(w, "upstream authorization failed", http.StatusBadGateway)
				return
			}
			b, err := callB(r.Context(), hc, cfg.BURL+"/orders", tok)
			if err != nil {
				log.Printf("service a: call b: %v", err)
				http.Error(w, "service b failed", http.StatusBadGateway)
				return
			}
			out := reply("a", p)
			out.Via = b
			writeJSON(w, out)
		})))
	return mux, nil
}

// exchange trades the token service A received for one meant for service
// B (RFC 8693). A real service would cache the answer until shortly before
// it expires.
func exchange(ctx context.Context, hc *http.Client, cfg AConfig, subject string) (string, error) {
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subject},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {AudienceB},
		"scope":              {"orders:read"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(cfg.Issuer, "/")+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil {
		return "", fmt.Errorf("token endpoint: %s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		return "", fmt.Errorf("token endpoint: %s: %s %s", resp.Status, body.Error, body.Description)
	}
	return body.AccessToken, nil
}

func callB(ctx context.Context, hc *http.Client, u, tok string) (*Reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New("service b answered " + resp.Status)
	}
	var r Reply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&r); err != nil {
		return nil, err
	}
	return &r, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
