package token

import (
	"context"
	"fmt"
)

// KeySet finds the public key that verifies a token.
type KeySet interface {
	// Key returns the key whose ID is kid, or an error wrapping
	// ErrUnknownKey. Implementations must choose keys by kid alone and never
	// by any other token header (jku, x5u, jwk, x5c, alg).
	Key(ctx context.Context, kid string) (PublicKey, error)
}

// StaticKeySet is a fixed set of public keys. It is safe for concurrent use.
type StaticKeySet struct {
	keys map[string]PublicKey
}

var _ KeySet = (*StaticKeySet)(nil)

// NewStaticKeySet returns a key set holding keys. Every key must be valid
// for its algorithm (see [PublicKey]) and key ids must be unique.
func NewStaticKeySet(keys ...PublicKey) (*StaticKeySet, error) {
	m := make(map[string]PublicKey, len(keys))
	for _, k := range keys {
		if err := k.check(); err != nil {
			return nil, err
		}
		if _, dup := m[k.ID]; dup {
			return nil, fmt.Errorf("%w: duplicate key id", errKey)
		}
		m[k.ID] = k
	}
	return &StaticKeySet{keys: m}, nil
}

// Key implements [KeySet].
func (s *StaticKeySet) Key(_ context.Context, kid string) (PublicKey, error) {
	if k, ok := s.keys[kid]; ok {
		return k, nil
	}
	return PublicKey{}, ErrUnknownKey
}

// Keys returns the keys in the set, in no particular order.
func (s *StaticKeySet) Keys() []PublicKey {
	out := make([]PublicKey, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, k)
	}
	return out
}
