package gateway

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

const baseConfig = `issuer = "http://127.0.0.1:8080"
audience = "https://api.example.com"
client_id = "gw"
`

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name   string
		routes string
		ok     bool
	}{
		{"minimal", "[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:9001\"\n", true},
		{"full", `[[route]]
path = "/orders/"
host = "api.example.com"
upstream = "https://orders.internal:8443/base"
audience = "http://orders.internal"
accept = ["jwt", "opaque", "apikey"]
all_of = ["orders:read"]
any_of = ["a", "b"]
scope = "orders:read"
rate = "100/s"
strip_prefix = true
`, true},
		{"no routes", "", false},
		{"unknown key", "[[route]]\npath = \"/\"\nupstream = \"http://x\"\ncolour = \"red\"\n", false},
		{"relative upstream", "[[route]]\npath = \"/\"\nupstream = \"/x\"\n", false},
		{"ftp upstream", "[[route]]\npath = \"/\"\nupstream = \"ftp://x\"\n", false},
		{"upstream with user", "[[route]]\npath = \"/\"\nupstream = \"http://u:p@x\"\n", false},
		{"unknown kind", "[[route]]\npath = \"/\"\nupstream = \"http://x\"\naccept = [\"cookie\"]\n", false},
		{"duplicate", "[[route]]\npath = \"/a/\"\nupstream = \"http://x\"\n[[route]]\npath = \"/a\"\nupstream = \"http://y\"\n", false},
		{"same path other host", "[[route]]\npath = \"/a/\"\nupstream = \"http://x\"\n[[route]]\npath = \"/a/\"\nhost = \"h\"\nupstream = \"http://y\"\n", true},
		{"bad rate", "[[route]]\npath = \"/\"\nupstream = \"http://x\"\nrate = \"fast\"\n", false},
		{"bad scope", "[[route]]\npath = \"/\"\nupstream = \"http://x\"\nall_of = [\"a b\"]\n", false},
		{"relative path", "[[route]]\npath = \"a/\"\nupstream = \"http://x\"\n", false},
		{"dot path", "[[route]]\npath = \"/a/../b\"\nupstream = \"http://x\"\n", false},
		{"host with port", "[[route]]\npath = \"/\"\nhost = \"h:80\"\nupstream = \"http://x\"\n", false},
		{"inline secret", "client_secret = \"x\"\n[[route]]\npath = \"/\"\nupstream = \"http://x\"\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(baseConfig + tt.routes))
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Errorf("error does not wrap ErrConfig: %v", err)
			}
			if tt.name == "full" {
				r := c.Routes[0]
				if r.rateN != 100 || r.rateWindow != time.Second || len(r.kinds) != 3 || c.Listen != "127.0.0.1:8081" {
					t.Errorf("route = %+v, listen %q", r, c.Listen)
				}
			}
		})
	}
	for name, top := range map[string]string{
		"plain http issuer": "issuer = \"http://auth.example.com\"\naudience = \"a\"\nclient_id = \"gw\"\n",
		"no audience":       "issuer = \"http://127.0.0.1:8080\"\nclient_id = \"gw\"\n",
		"no client":         "issuer = \"http://127.0.0.1:8080\"\naudience = \"a\"\n",
	} {
		if _, err := ParseConfig([]byte(top + "[[route]]\npath = \"/\"\nupstream = \"http://x\"\n")); err == nil {
			t.Errorf("%s: got nil error", name)
		}
	}
}

func TestSampleConfig(t *testing.T) {
	data, err := os.ReadFile("testdata/gateway.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 2 || c.AdminListen == "" {
		t.Errorf("sample parsed as %+v", c)
	}
}

func TestClientSecret(t *testing.T) {
	c := &Config{}
	env := func(v string) func(string) string { return func(string) string { return v } }
	if s, err := c.ClientSecret(env("from-env")); err != nil || s != "from-env" {
		t.Errorf("env secret = %q, %v", s, err)
	}
	if _, err := c.ClientSecret(env("")); err == nil {
		t.Error("no secret: got nil error")
	}
}

func TestMatch(t *testing.T) {
	cfg, err := ParseConfig([]byte(baseConfig + `
[[route]]
path = "/"
upstream = "http://root"
[[route]]
path = "/orders/"
upstream = "http://orders"
[[route]]
path = "/orders/admin"
upstream = "http://admin"
[[route]]
path = "/orders/"
host = "h.example"
upstream = "http://host"
`))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &table{}
	for _, r := range cfg.Routes {
		tbl.routes = append(tbl.routes, &route{cfg: r})
	}
	sortRoutes(tbl.routes)
	for _, tt := range []struct{ host, path, want string }{
		{"x", "/orders/1", "http://orders"},
		{"x", "/orders", "http://orders"},
		{"x", "/ordersX", "http://root"},
		{"x", "/orders/admin/1", "http://admin"},
		{"x", "/orders/adminX", "http://orders"},
		{"H.Example", "/orders/1", "http://host"},
		{"h.example", "/other", "http://root"},
	} {
		r := tbl.match(tt.host, tt.path)
		if r == nil || r.cfg.Upstream != tt.want {
			t.Errorf("match(%q, %q) = %v, want %s", tt.host, tt.path, r, tt.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	data, _ := os.ReadFile("testdata/gateway.toml")
	f.Add(string(data))
	f.Add(baseConfig + "[[route]]\npath = \"/\"\nupstream = \"http://x\"\n")
	f.Add("[[route]]\npath = 1")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConfig([]byte(s))
		if err != nil {
			if c != nil {
				t.Fatal("config with an error")
			}
			return
		}
		for _, r := range c.Routes {
			if r.upstream == nil || !strings.HasPrefix(r.Path, "/") || len(r.kinds) == 0 || r.Audience == "" {
				t.Fatalf("accepted route not fully validated: %+v", r)
			}
		}
	})
}
