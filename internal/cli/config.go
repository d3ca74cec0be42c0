package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// settings are the flags that may also come from the environment
// (GATEHOUSE_<NAME>) and the config file: process-wide settings, shared by
// `serve` and the offline admin commands. Per-command arguments (a client's
// --name, a key's --scope, …) come only from the command line, so a stray
// GATEHOUSE_NAME can never fill them in.
var settings = map[string]bool{
	"config": true, "data": true, "db": true, "log-format": true, "log-level": true,
	"apikey-prefix": true, "apikey-env": true,
}

// serveSettings are settings that only `serve` reads; in other commands a
// flag of the same name (such as `client create --access-token-ttl`) means
// something else.
var serveSettings = map[string]bool{
	"addr": true, "issuer": true, "tls-cert": true, "tls-key": true, "key-rotation": true,
	"apikey-grace": true, "audit-retention": true, "housekeeping-interval": true, "access-token-ttl": true, "secret-grace": true,
	"admin-token": true, "registration-token": true, "redis": true, "db-max-conns": true,
}

// isSetting reports whether flag name of fs may come from the environment
// or the config file.
func isSetting(fs *flag.FlagSet, name string) bool {
	return settings[name] || (serveSettings[name] && fs.Name() == "gatehouse serve")
}

// bindSources fills every setting of fs (see settings) that was not given on
// the command line from, in order of precedence, the environment
// (GATEHOUSE_<NAME>, with dashes as underscores) and the config file named
// by the "config" flag (TOML, keys spelled like the flags). One config file
// serves every command: each takes the keys it knows. A key that is no
// setting of any command is an error, so a typo is not silently ignored.
func bindSources(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var file map[string]any
	if cf := fs.Lookup("config"); cf != nil {
		path := cf.Value.String()
		if !set["config"] {
			if v := getenv(envName("config")); v != "" {
				path = v
			}
		}
		if path != "" {
			var err error
			if file, err = readConfigFile(path); err != nil {
				return err
			}
			var unknown []string
			for k := range file {
				if k == "config" || !(settings[k] || serveSettings[k]) {
					unknown = append(unknown, k)
				}
			}
			if len(unknown) > 0 {
				sort.Strings(unknown)
				return fmt.Errorf("config file %s: unknown keys: %s", path, strings.Join(unknown, ", "))
			}
		}
	}

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" || !isSetting(fs, f.Name) {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(f.Name), err))
			}
			return
		}
		v, ok := file[f.Name]
		if !ok {
			return
		}
		for _, s := range configStrings(v) {
			if err := fs.Set(f.Name, s); err != nil {
				errs = append(errs, fmt.Errorf("config key %q: %w", f.Name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// envName is the environment variable for a flag: "log-format" becomes
// GATEHOUSE_LOG_FORMAT.
func envName(flagName string) string {
	return "GATEHOUSE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func readConfigFile(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var m map[string]any
	if err := toml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return m, nil
}

// configStrings turns a TOML value into the flag values it stands for: an
// array sets a repeatable flag once per element.
func configStrings(v any) []string {
	switch v := v.(type) {
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			out = append(out, fmt.Sprint(e))
		}
		return out
	default:
		return []string{fmt.Sprint(v)}
	}
}
