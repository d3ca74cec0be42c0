package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

const (
	testAdminToken = "admin-token-0123456789-0123456789-abcdef"
	testIAT        = "initial-access-token-0123456789-0123456789"
)

// jsonRequest sends a JSON body (or none) with a bearer token.
func (e *m2mEnv) jsonRequest(t testing.TB, method, path, bearer, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	status, hdr, b := do(t, req)
	var m map[string]any
	if len(b) > 0 && hdr.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, path, b, err)
		}
	}
	return status, hdr, m
}

func TestAdminAPI(t *testing.T) {
	e := newM2MEnv(t, nil, func(c *Config) { c.AdminToken = testAdminToken })
	create := `{"client_name":"Reports","grant_types":["client_credentials"],"scope":"read write","audiences":["https://api"]}`
	status, _, c := e.jsonRequest(t, "POST", AdminClientsPath, testAdminToken, create)
	if status != http.StatusCreated || c["client_id"] == "" || c["client_secret"] == nil || c["scope"] != "read write" {
		t.Fatalf("create: %d %v; want 201 with client_id, client_secret, scope", status, c)
	}
	id, secret := c["client_id"].(string), c["client_secret"].(string)
	e.token(t, id, secret, "read") // the secret works at once

	status, _, got := e.jsonRequest(t, "GET", AdminClientsPath+"/"+id, testAdminToken, "")
	if status != 200 || got["client_name"] != "Reports" || got["client_secret"] != nil {
		t.Errorf("show: %d %v; want the client without a secret", status, got)
	}
	status, _, got = e.jsonRequest(t, "PUT", AdminClientsPath+"/"+id, testAdminToken,
		`{"client_name":"Reports v2","grant_types":["client_credentials"],"scope":"read"}`)
	if status != 200 || got["client_name"] != "Reports v2" || got["scope"] != "read" || got["audiences"] != nil {
		t.Errorf("update: %d %v", status, got)
	}
	e.p.OnClientChange(context.Background(), []store.Change{{Kind: store.ChangeClient, Ref: id}}) // as the change feed would
	if status, _, body := e.post(t, TokenPath, url.Values{"grant_type": {"client_credentials"}, "scope": {"write"}}, id, secret); status != 400 ||
		errorCode(t, body) != errInvalidScope {
		t.Errorf("scope removed by update: %d %s, want invalid_scope", status, body)
	}
	status, _, got = e.jsonRequest(t, "POST", AdminClientsPath+"/"+id+"/rotate-secret", testAdminToken, "")
	newSecret, _ := got["client_secret"].(string)
	if status != 200 || newSecret == "" || newSecret == secret {
		t.Errorf("rotate: %d %v", status, got)
	}
	status, _, got = e.jsonRequest(t, "GET", AdminClientsPath+"?limit=10", testAdminToken, "")
	if list, _ := got["clients"].([]any); status != 200 || len(list) != 1 {
		t.Errorf("list: %d %v; want one client", status, got)
	}
	if status, _, _ := e.jsonRequest(t, "DELETE", AdminClientsPath+"/"+id, testAdminToken, ""); status != http.StatusNoContent {
		t.Errorf("delete: %d, want 204", status)
	}
	if status, _, _ := e.jsonRequest(t, "GET", AdminClientsPath+"/"+id, testAdminToken, ""); status != 404 {
		t.Errorf("show deleted: %d, want 404", status)
	}

	bad := []struct {
		name, method, path, token, body string
		want                            int
		wantCode                        string
	}{
		{"no token", "GET", AdminClientsPath, "", "", 401, ""},
		{"wrong token", "GET", AdminClientsPath, "wrong", "", 401, errInvalidToken},
		{"almost the token", "GET", AdminClientsPath, testAdminToken[:len(testAdminToken)-1], "", 401, errInvalidToken},
		{"unknown member", "POST", AdminClientsPath, testAdminToken, `{"client_name":"x","grant_types":["client_credentials"],"scopes":"typo"}`, 400, errInvalidRequest},
		{"malformed JSON", "POST", AdminClientsPath, testAdminToken, `{"client_name":`, 400, errInvalidRequest},
		{"wrong type", "POST", AdminClientsPath, testAdminToken, `{"client_name":1}`, 400, errInvalidRequest},
		{"bad grant", "POST", AdminClientsPath, testAdminToken, `{"client_name":"x","grant_types":["password"]}`, 400, errInvalidClientMeta},
		{"bad redirect", "POST", AdminClientsPath, testAdminToken, `{"client_name":"x","grant_types":["authorization_code"],"redirect_uris":["http://evil.example/cb"]}`, 400, errInvalidRedirectURI},
		{"bad limit", "GET", AdminClientsPath + "?limit=0", testAdminToken, "", 400, errInvalidRequest},
		{"missing client", "PUT", AdminClientsPath + "/nope", testAdminToken, `{"client_name":"x","grant_types":["client_credentials"]}`, 404, "not_found"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, m := e.jsonRequest(t, tc.method, tc.path, tc.token, tc.body)
			if status != tc.want || (tc.wantCode != "" && m["error"] != tc.wantCode) {
				t.Errorf("got %d %v, want %d %s", status, m, tc.want, tc.wantCode)
			}
			if status == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %q", hdr.Get("WWW-Authenticate"))
			}
		})
	}
	// A content type other than JSON.
	req, _ := http.NewRequest("POST", e.srv.URL+AdminClientsPath, strings.NewReader(create))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	if status, _, _ := do(t, req); status != 400 {
		t.Errorf("text/plain body: %d, want 400", status)
	}
}

func TestAdminAPIDisabledWithoutToken(t *testing.T) {
	e := newM2MEnv(t, nil, nil)
	for _, path := range []string{AdminClientsPath, RegisterPath} {
		status, _, _ := e.jsonRequest(t, "POST", path, "anything", `{}`)
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			t.Errorf("POST %s without a configured token: %d, want 404 or 405", path, status)
		}
	}
}

func TestDynamicClientRegistration(t *testing.T) {
	e := newM2MEnv(t, nil, func(c *Config) { c.InitialAccessToken = testIAT })
	if md := e.p.Metadata(); md.RegistrationEndpoint != e.issuer+RegisterPath {
		t.Errorf("registration_endpoint = %q, want %q", md.RegistrationEndpoint, e.issuer+RegisterPath)
	}
	body := `{"client_name":"Native app","grant_types":["authorization_code","refresh_token"],"response_types":["code"],
		"redirect_uris":["http://127.0.0.1/callback"],"token_endpoint_auth_method":"none","scope":"openid profile",
		"logo_uri":"https://ignored.example/logo.png"}`
	status, _, reg := e.jsonRequest(t, "POST", RegisterPath, testIAT, body)
	if status != http.StatusCreated {
		t.Fatalf("register public client: %d %v", status, reg)
	}
	id, _ := reg["client_id"].(string)
	regTok, _ := reg["registration_access_token"].(string)
	if id == "" || regTok == "" || reg["client_secret"] != nil || reg["registration_client_uri"] != e.issuer+RegisterPath+"/"+id ||
		reg["token_endpoint_auth_method"] != "none" || reg["client_id_issued_at"] == nil {
		t.Errorf("registration answer %v", reg)
	}

	status, _, conf := e.jsonRequest(t, "POST", RegisterPath, testIAT,
		`{"client_name":"Service","grant_types":["client_credentials"],"scope":"read"}`)
	secret, _ := conf["client_secret"].(string)
	if status != 201 || secret == "" || conf["client_secret_expires_at"] != float64(0) {
		t.Fatalf("register confidential client: %d %v", status, conf)
	}
	e.token(t, conf["client_id"].(string), secret, "read")

	// RFC 7592: read, update, delete with the registration access token.
	path := RegisterPath + "/" + id
	if status, _, got := e.jsonRequest(t, "GET", path, regTok, ""); status != 200 || got["client_name"] != "Native app" {
		t.Errorf("read: %d %v", status, got)
	}
	upd := `{"client_id":"` + id + `","client_name":"Renamed","grant_types":["authorization_code"],
		"redirect_uris":["http://127.0.0.1/callback","http://[::1]/callback"],"token_endpoint_auth_method":"none"}`
	if status, _, got := e.jsonRequest(t, "PUT", path, regTok, upd); status != 200 || got["client_name"] != "Renamed" {
		t.Errorf("update: %d %v", status, got)
	}
	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
		wantCode                        string
	}{
		{"register without token", "POST", RegisterPath, "", `{}`, 401, ""},
		{"register with wrong token", "POST", RegisterPath, "wrong", `{}`, 401, errInvalidToken},
		{"register with a client_id", "POST", RegisterPath, testIAT, `{"client_id":"mine","client_name":"x","grant_types":["client_credentials"]}`, 400, errInvalidClientMeta},
		{"register bad redirect", "POST", RegisterPath, testIAT, `{"client_name":"x","grant_types":["authorization_code"],"redirect_uris":["https://x.example/cb#frag"]}`, 400, errInvalidRedirectURI},
		{"register public client_credentials", "POST", RegisterPath, testIAT, `{"client_name":"x","grant_types":["client_credentials"],"token_endpoint_auth_method":"none"}`, 400, errInvalidClientMeta},
		{"register implicit", "POST", RegisterPath, testIAT, `{"client_name":"x","grant_types":["implicit"]}`, 400, errInvalidClientMeta},
		{"register token response type", "POST", RegisterPath, testIAT, `{"client_name":"x","grant_types":["authorization_code"],"response_types":["token"],"redirect_uris":["https://x.example/cb"]}`, 400, errInvalidClientMeta},
		{"register malformed", "POST", RegisterPath, testIAT, `[]`, 400, errInvalidRequest},
		{"read with the initial token", "GET", path, testIAT, "", 401, errInvalidToken},
		{"read another client", "GET", RegisterPath + "/" + conf["client_id"].(string), regTok, "", 401, errInvalidToken},
		{"read unknown client", "GET", RegisterPath + "/nope", regTok, "", 401, errInvalidToken},
		{"update other client_id", "PUT", path, regTok, `{"client_id":"other","client_name":"x","grant_types":["authorization_code"],"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`, 400, errInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, m := e.jsonRequest(t, tc.method, tc.path, tc.token, tc.body)
			if status != tc.want || (tc.wantCode != "" && m["error"] != tc.wantCode) {
				t.Errorf("got %d %v, want %d %s", status, m, tc.want, tc.wantCode)
			}
		})
	}
	if status, _, _ := e.jsonRequest(t, "DELETE", path, regTok, ""); status != http.StatusNoContent {
		t.Errorf("delete: %d, want 204", status)
	}
	if status, _, _ := e.jsonRequest(t, "GET", path, regTok, ""); status != 401 {
		t.Errorf("read after delete: %d, want 401", status)
	}
}
