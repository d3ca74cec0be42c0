package apikey

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestKeyNeverPrintsSecret(t *testing.T) {
	k := newTestKey(t, Format{}, "redact")
	secret := secretOf(k)
	type wrapper struct {
		K   Key
		Ptr *Key
	}
	var outputs = map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10v", "%-70s", "%T"} {
		outputs["fmt "+verb] = fmt.Sprintf(verb, k)
		outputs["fmt pointer "+verb] = fmt.Sprintf(verb, &k)
		outputs["fmt wrapper "+verb] = fmt.Sprintf(verb, wrapper{k, &k})
	}
	outputs["fmt slice"] = fmt.Sprint([]Key{k})
	outputs["fmt map"] = fmt.Sprint(map[string]Key{"k": k})
	outputs["String"] = k.String()
	outputs["GoString"] = k.GoString()
	for _, h := range []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
	} {
		var buf bytes.Buffer
		slog.New(h.new(&buf)).Info("msg", "key", k, "ptr", &k, slog.Any("any", k), slog.Group("g", "k", k))
		outputs["slog "+h.name] = buf.String()
	}
	j, err := json.Marshal(wrapper{k, &k})
	if err != nil {
		t.Fatal(err)
	}
	outputs["json"] = string(j)

	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			for i := 0; i+8 <= len(secret); i++ {
				if strings.Contains(out, secret[i:i+8]) {
					t.Fatalf("output %q contains part of the secret", out)
				}
			}
			if name != "fmt %T" && name != "fmt pointer %T" && name != "fmt wrapper %T" && !strings.Contains(out, k.ID) {
				t.Errorf("output %q does not mention the key ID", out)
			}
		})
	}
}

func TestKeyMasked(t *testing.T) {
	k := newTestKey(t, Format{Prefix: "acme", Env: EnvTest}, "mask")
	pt := k.Plaintext()
	want := "acme_test_" + k.ID + "…" + pt[len(pt)-4:]
	if got := k.Masked(); got != want {
		t.Errorf("Masked() = %q, want %q", got, want)
	}
	if got := (Key{}).Masked(); got != "" {
		t.Errorf("zero Key Masked() = %q, want empty", got)
	}
	if got, want := fmt.Sprintf("%#v", k), `apikey.Key{"`+want+`"}`; got != want {
		t.Errorf("%%#v = %s, want %s", got, want)
	}
}
