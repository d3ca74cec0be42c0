package oauth

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/store"
	"github.com/gatehouse-dev/gatehouse/token"
)

// TestCodeRedeemRace presents one code several times at once. The tokens
// are signed while the redemption commits, so every request may sign a
// set; only the one whose commit redeemed the code may answer with it.
// The others see a replay (RFC 6749 section 4.1.2), which revokes what
// the winner was given, and must not return tokens of their own.
func TestCodeRedeemRace(t *testing.T) {
	m2mBackends(t, func(t *testing.T, open func(testing.TB) *store.Store) {
		e := newFlowEnv(t, open, nil)
		q := e.authorizeQuery()
		code := e.runToCode(t, e.browser(t), q).Get("code")
		form := url.Values{
			"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {testVerifier},
			"redirect_uri": {q.Get("redirect_uri")}, "client_id": {e.client.ID},
		}.Encode()

		const n = 8
		type answer struct {
			status int
			body   map[string]any
			err    error
		}
		answers := make([]answer, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				resp, err := http.Post(e.issuer+TokenPath, "application/x-www-form-urlencoded", strings.NewReader(form))
				if err != nil {
					answers[i].err = err
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				answers[i] = answer{status: resp.StatusCode, err: err}
				if err == nil {
					answers[i].err = json.Unmarshal(b, &answers[i].body)
				}
			})
		}
		close(start)
		wg.Wait()

		var won []map[string]any
		for i, a := range answers {
			switch {
			case a.err != nil:
				t.Fatalf("request %d: %v", i, a.err)
			case a.status == http.StatusOK:
				won = append(won, a.body)
			case a.status != http.StatusBadRequest || a.body["error"] != errInvalidGrant:
				t.Errorf("request %d: %d %v, want 200 or 400 invalid_grant", i, a.status, a.body)
			}
			if a.status != http.StatusOK && (a.body["access_token"] != nil || a.body["id_token"] != nil || a.body["refresh_token"] != nil) {
				t.Errorf("request %d refused with tokens: %v", i, a.body)
			}
		}
		if len(won) != 1 {
			t.Fatalf("%d of %d concurrent redemptions succeeded, want exactly 1", len(won), n)
		}
		at, idt := won[0]["access_token"].(string), won[0]["id_token"].(string)
		if ic := claimsOf(t, idt); ic["at_hash"] != atHash(token.RS256, at) {
			t.Errorf("ID token at_hash %v, want the winner's access token's", ic["at_hash"])
		}
		// The access token the winner got is the one its commit recorded:
		// the replays revoked it by that jti.
		jti := claimsOf(t, at)["jti"].(string)
		if _, err := e.st.RevokedToken(context.Background(), jti); err != nil {
			t.Errorf("access token of a replayed code not revoked by its jti: %v", err)
		}
	})
}
