package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gatehouse-dev/gatehouse/internal/apikey"
	"github.com/gatehouse-dev/gatehouse/internal/keyauth"
	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// NewAPIKeys returns the API-key service for a store, with the key format
// of cfg. It is shared by `serve` and the offline `apikey` and `scan`
// commands.
func NewAPIKeys(st *store.Store, master *secret.Master, cfg Config) (*keyauth.Service, error) {
	return newAPIKeys(st, master, cfg, nil)
}

// newAPIKeys is NewAPIKeys with the rate limiter of keys (nil: per process).
func newAPIKeys(st *store.Store, master *secret.Master, cfg Config, limiter ratelimit.Limiter) (*keyauth.Service, error) {
	cfg = withDefaults(cfg)
	h, err := apikey.NewHasher(master.Pepper())
	if err != nil {
		return nil, err
	}
	return keyauth.New(keyauth.Config{Store: st, Hasher: h, Format: cfg.APIKeyFormat, Logger: cfg.Logger,
		Now: cfg.Now, Grace: cfg.APIKeyGrace, Limiter: limiter})
}

// initAPIKeys creates the API-key service and warms its cache.
func (s *Server) initAPIKeys(ctx context.Context) error {
	svc, err := newAPIKeys(s.store, s.master, s.cfg, s.limiter)
	if err != nil {
		return err
	}
	if err := svc.Preload(ctx); err != nil {
		return fmt.Errorf("load API keys: %w", err)
	}
	s.apikeys = svc
	return nil
}

// registerAPIKeys adds POST /apikeys/verify, the /admin/apikeys API and
// the self-service page /account/apikeys (behind the login pages).
// The admin API takes the admin token; the verification endpoint, meant for
// services, takes the admin token or a confidential OAuth client's
// credentials in HTTP Basic (client_secret_basic).
func (s *Server) registerAPIKeys(mux *http.ServeMux) {
	admin := keyauth.BearerToken(s.cfg.AdminToken, "admin")
	s.apikeys.Register(mux, keyauth.Routes{
		Verify: keyauth.AnyOf(admin, s.oauth.ClientAuthenticator()),
		Admin:  admin,
	})
	if err := s.apikeys.RegisterPage(mux, s.oauth); err != nil {
		panic(err) // the page's template is embedded and tested
	}
}

// APIKeys returns the server's API-key service.
func (s *Server) APIKeys() *keyauth.Service { return s.apikeys }
