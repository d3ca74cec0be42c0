package cli

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/oauth"
)

// exchangeOut is the token-exchange policy in a client's JSON form.
type exchangeOut struct {
	ClientID          string   `json:"client_id"`
	GrantTypes        []string `json:"grant_types"`
	ExchangeAudiences []string `json:"exchange_audiences"`
	MayImpersonate    bool     `json:"may_impersonate"`
}

func TestClientExchangePolicy(t *testing.T) {
	data := []string{"--data", t.TempDir()}
	var c exchangeOut
	runJSON(t, &c, append([]string{"client", "create", "--name", "Service A",
		"--grant-type", oauth.GrantTypeTokenExchange, "--audience", "https://a.example",
		"--exchange-audience", "https://b.example", "--exchange-audience", "https://c.example"}, data...)...)
	if !slices.Equal(c.ExchangeAudiences, []string{"https://b.example", "https://c.example"}) || c.MayImpersonate ||
		!slices.Equal(c.GrantTypes, []string{oauth.GrantTypeTokenExchange}) {
		t.Errorf("create = %+v; want two exchange audiences, no impersonation, the token-exchange grant", c)
	}

	var upd exchangeOut
	runJSON(t, &upd, append([]string{"client", "update", c.ClientID, "--impersonate"}, data...)...)
	if !upd.MayImpersonate || len(upd.ExchangeAudiences) != 2 {
		t.Errorf("update --impersonate = %+v; want impersonation, the audiences unchanged", upd)
	}
	var upd2 exchangeOut
	runJSON(t, &upd2, append([]string{"client", "update", c.ClientID, "--impersonate=false",
		"--exchange-audience", "https://d.example"}, data...)...)
	if upd2.MayImpersonate || !slices.Equal(upd2.ExchangeAudiences, []string{"https://d.example"}) {
		t.Errorf("update = %+v; want no impersonation, exchange audience https://d.example", upd2)
	}

	var text strings.Builder
	if err := Run(context.Background(), append([]string{"client", "show", c.ClientID}, data...), &text, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "exchange for:  https://d.example") {
		t.Errorf("show = %q, want the exchange audience", text.String())
	}

	usage := [][]string{
		// Exchange policy without the grant.
		{"client", "create", "--name", "x", "--grant-type", "client_credentials", "--exchange-audience", "https://b.example"},
		{"client", "create", "--name", "x", "--grant-type", "client_credentials", "--impersonate"},
		// A malformed audience.
		{"client", "create", "--name", "x", "--grant-type", oauth.GrantTypeTokenExchange, "--exchange-audience", "a b"},
		// Public clients cannot exchange.
		{"client", "create", "--name", "x", "--public", "--grant-type", "authorization_code",
			"--grant-type", oauth.GrantTypeTokenExchange, "--redirect-uri", "http://127.0.0.1/cb"},
	}
	for _, args := range usage {
		if err := Run(context.Background(), append(args, data...), io.Discard, io.Discard); !errors.Is(err, ErrUsage) {
			t.Errorf("gatehouse %s: got %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}
