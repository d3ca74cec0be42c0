package oauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/secret"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// Client management shared by the admin API (admin.go), the CLI
// (`gatehouse client`) and the operator console (internal/console): each
// checks and stores clients through these functions only.

// ErrNoSecret means a client has no secret to rotate: it is public or
// authenticates with private_key_jwt.
var ErrNoSecret = errors.New("client has no secret")

// CreateClient checks c (see [CheckClient], which fills defaults; a
// gateway client without an access-token lifetime gets
// [DefaultGatewayTokenTTL]), gives a confidential client that does not use
// private_key_jwt a new secret, and stores it. It returns the client as stored and the plain secret
// ("" if none), which is shown once and never kept. Errors wrap
// [ErrInvalidClient] (settings refused), [store.ErrConflict] (the ID is
// taken) or the store's error.
func CreateClient(ctx context.Context, st *store.Store, h *secret.Hasher, c store.Client) (store.Client, string, error) {
	if c.Gateway && c.AccessTokenTTL == 0 {
		c.AccessTokenTTL = DefaultGatewayTokenTTL
	}
	if err := CheckClient(&c); err != nil {
		return store.Client{}, "", err
	}
	var plain string
	if !c.Public && c.TokenEndpointAuthMethod != authPrivateKeyJWT {
		plain, c.SecretHash = NewClientSecret(h)
	}
	created, err := st.CreateClient(ctx, c)
	if err != nil {
		return store.Client{}, "", fmt.Errorf("create client: %w", err)
	}
	return created, plain, nil
}

// UpdateClient checks c and replaces the stored settings of client c.ID
// (never its secrets; see [RotateClientSecret]). Errors wrap
// [ErrInvalidClient], [store.ErrNotFound] or the store's error.
func UpdateClient(ctx context.Context, st *store.Store, c store.Client) (store.Client, error) {
	if err := CheckClient(&c); err != nil {
		return store.Client{}, err
	}
	updated, err := st.UpdateClient(ctx, c)
	if err != nil {
		return store.Client{}, fmt.Errorf("update client: %w", err)
	}
	return updated, nil
}

// RotateClientSecret gives client id a new secret and returns the client
// and the plain secret, shown once; the previous secret keeps working
// until graceUntil. Errors wrap [ErrNoSecret], [store.ErrNotFound] or the
// store's error.
func RotateClientSecret(ctx context.Context, st *store.Store, h *secret.Hasher, id string, graceUntil time.Time) (store.Client, string, error) {
	c, err := st.Client(ctx, id)
	if err != nil {
		return store.Client{}, "", fmt.Errorf("rotate client secret: %w", err)
	}
	if c.Public || c.TokenEndpointAuthMethod == authPrivateKeyJWT {
		return store.Client{}, "", fmt.Errorf("rotate client secret: %w", ErrNoSecret)
	}
	plain, hash := NewClientSecret(h)
	rotated, err := st.RotateClientSecret(ctx, id, hash, graceUntil)
	if err != nil {
		return store.Client{}, "", fmt.Errorf("rotate client secret: %w", err)
	}
	return rotated, plain, nil
}
