package cli

import "testing"

func TestGCSettings(t *testing.T) {
	for _, tc := range []struct {
		name        string
		env         map[string]string
		cgroupMax   string
		wantPercent int
		wantLimit   int64
	}{
		{"defaults, no cgroup limit", nil, "", serveGCPercent, 0},
		{"unlimited cgroup", nil, "max\n", serveGCPercent, 0},
		{"cgroup limit", nil, "1073741824\n", serveGCPercent, 805306368},
		{"GOGC set", map[string]string{"GOGC": "100"}, "", 0, 0},
		{"GOGC=off kept", map[string]string{"GOGC": "off"}, "1073741824", 0, 805306368},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "200MiB"}, "1073741824", serveGCPercent, 0},
		{"garbage in memory.max", nil, "lots", serveGCPercent, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			percent, limit := gcSettings(lookup, tc.cgroupMax)
			if percent != tc.wantPercent || limit != tc.wantLimit {
				t.Errorf("got percent %d, limit %d; want %d, %d", percent, limit, tc.wantPercent, tc.wantLimit)
			}
		})
	}
}
