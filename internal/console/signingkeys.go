package console

import (
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/signing"
	"github.com/gatehouse-dev/gatehouse/token"
)

const signingKeysPath = Path + "/signing-keys"

// registerSigningKeys adds the signing-keys page and its rotate form, the
// same rotation as `gatehouse keys rotate [--immediate]`.
func (c *Console) registerSigningKeys(mux *http.ServeMux) {
	c.Handle(mux, "GET "+signingKeysPath, c.signingKeys)
	c.Handle(mux, "POST "+signingKeysPath+"/rotate", c.rotateSigningKey)
}

// keyView is one signing key on the page.
type keyView struct {
	ID                             string
	State                          string // next, active or retired
	ActivatesAt, RetiresAt, Expiry time.Time
}

// keyChain is one algorithm's keys, oldest first.
type keyChain struct {
	Algorithm string
	Keys      []keyView
}

// signingKeysData fills console_signing_keys.html.
type signingKeysData struct {
	Chains []keyChain
}

func (c *Console) signingKeys(w http.ResponseWriter, r *http.Request, op Operator) {
	now := c.now()
	keys := c.cfg.Keys.Keys()
	var data signingKeysData
	for _, alg := range signing.Algorithms {
		chain := keyChain{Algorithm: string(alg)}
		for _, k := range keys {
			if k.Algorithm == alg {
				chain.Keys = append(chain.Keys, keyView{ID: k.ID, State: k.State(now), ActivatesAt: k.ActivatesAt,
					RetiresAt: k.RetiresAt, Expiry: k.ExpiresAt})
			}
		}
		data.Chains = append(data.Chains, chain)
	}
	c.Render(w, r, http.StatusOK, "signing_keys", op, Page{Title: "Signing keys", Section: "signing", Data: data})
}

func (c *Console) rotateSigningKey(w http.ResponseWriter, r *http.Request, op Operator) {
	var algs []token.Algorithm
	switch a := r.PostForm.Get("alg"); a {
	case "all":
		algs = signing.Algorithms
	default:
		for _, alg := range signing.Algorithms {
			if string(alg) == a {
				algs = []token.Algorithm{alg}
			}
		}
	}
	mode := r.PostForm.Get("mode")
	if len(algs) == 0 || (mode != "scheduled" && mode != "immediate") {
		c.Error(w, r, op, http.StatusBadRequest, "Bad request", "Choose an algorithm and a kind of rotation. Nothing was changed.")
		return
	}
	immediate := mode == "immediate"
	for _, alg := range algs {
		k, err := c.cfg.Keys.Rotate(r.Context(), alg, immediate)
		if err != nil {
			c.Fail(w, r, op, "rotate signing key", err)
			return
		}
		c.Audit(r.Context(), op, "signing_key.rotate", k.ID, map[string]any{"alg": string(alg), "immediate": immediate})
	}
	done := "keys-rotated"
	if immediate {
		done = "keys-rotated-now"
	}
	Redirect(w, r, signingKeysPath, done)
}
