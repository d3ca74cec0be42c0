// Package oauth implements Gatehouse's authorization-server endpoints.
package oauth

import "encoding/json"

// JWKSPath is where the public signing keys are served, relative to the
// issuer.
const JWKSPath = "/.well-known/jwks.json"

// Metadata is the authorization server metadata (RFC 8414 §2), which is also
// the OpenID Connect discovery document. It lists only what the server
// implements: a client that reads it must never be led to an endpoint or a
// feature that does not exist. Empty fields are omitted.
type Metadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint,omitempty"`
	TokenEndpoint                     string   `json:"token_endpoint,omitempty"`
	JWKSURI                           string   `json:"jwks_uri"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint,omitempty"`
	RegistrationEndpoint              string   `json:"registration_endpoint,omitempty"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint,omitempty"`
	RevocationEndpoint                string   `json:"revocation_endpoint,omitempty"`
	EndSessionEndpoint                string   `json:"end_session_endpoint,omitempty"`
	ScopesSupported                   []string `json:"scopes_supported,omitempty"`
	ResponseTypesSupported            []string `json:"response_types_supported,omitempty"`
	ResponseModesSupported            []string `json:"response_modes_supported,omitempty"`
	GrantTypesSupported               []string `json:"grant_types_supported,omitempty"`
	SubjectTypesSupported             []string `json:"subject_types_supported,omitempty"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported,omitempty"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	// TokenEndpointAuthSigningAlgValuesSupported lists the private_key_jwt
	// assertion algorithms accepted (RFC 8414 section 2).
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported,omitempty"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported,omitempty"`
	// IntrospectionSigningAlgValuesSupported lists the algorithms of JWT
	// introspection responses (RFC 9701 section 7).
	IntrospectionSigningAlgValuesSupported []string `json:"introspection_signing_alg_values_supported,omitempty"`
	CodeChallengeMethodsSupported          []string `json:"code_challenge_methods_supported,omitempty"`
	ClaimsSupported                        []string `json:"claims_supported,omitempty"`
	AuthorizationResponseISSSupported      bool     `json:"authorization_response_iss_parameter_supported,omitempty"`
}

// NewMetadata returns the metadata of a server at issuer with the endpoints
// implemented so far.
func NewMetadata(issuer string) Metadata {
	return Metadata{
		Issuer:  issuer,
		JWKSURI: issuer + JWKSPath,
	}
}

// JSON renders the metadata once, for serving from memory.
func (m Metadata) JSON() ([]byte, error) {
	return json.Marshal(m)
}
