package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestScannerString(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{`""`, "", true},
		{`"abc"`, "abc", true},
		{`"é😀"`, "é😀", true},
		{`"\"\\\/\b\f\n\r\t"`, "\"\\/\b\f\n\r\t", true},
		{`"\u00e9\u0041"`, "éA", true},
		{`"\uD83D\uDE00"`, "😀", true},
		{`"\ufffd"`, "\ufffd", true},
		{`"abc`, "", false},
		{`"\`, "", false},
		{`"\u00"`, "", false},
		{`"\u00g0"`, "", false},
		{`"\ud83d"`, "", false},
		{`"\ud83d\u0041"`, "", false},
		{`"\ude00"`, "", false},
		{`"\a"`, "", false},
		{"\"\t\"", "", false},
		{"\"\xff\"", "", false},
		{"\"\\n\xff\"", "", false},
		{"\"\xed\xa0\x80\"", "", false}, // a surrogate in UTF-8
		{`abc`, "", false},
	}
	for _, tt := range tests {
		d := scanner{s: tt.in}
		got, ok := d.str()
		if ok != tt.ok || got != tt.want {
			t.Errorf("str(%q): got %q, %v, want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		if ok && d.i != len(tt.in) {
			t.Errorf("str(%q): stopped at %d, want %d", tt.in, d.i, len(tt.in))
		}
	}
}

func TestCheckJSON(t *testing.T) {
	many := func(dup bool) string {
		var b strings.Builder
		b.WriteByte('{')
		for i := range 20 {
			fmt.Fprintf(&b, `"m%d":%d,`, i, i)
		}
		if dup {
			b.WriteString(`"m3":0`)
		} else {
			b.WriteString(`"last":0`)
		}
		b.WriteByte('}')
		return b.String()
	}
	tests := []struct {
		in   string
		want error
	}{
		{`{}`, nil},
		{` [1, -0.5e+3, "x", true, false, null, {"a": []}] `, nil},
		{`0`, nil},
		{many(false), nil},
		{many(true), ErrMalformed},
		{`{"a":1,"a":1}`, ErrMalformed},
		{`{"a":1,"\u0061":1}`, ErrMalformed},
		{`{"a":{"b":1,"b":1}}`, ErrMalformed},
		{`[{"b":1,"b":1}]`, ErrMalformed},
		{`{"a":1} {}`, ErrMalformed},
		{`[1,]`, ErrMalformed},
		{`[01]`, ErrMalformed},
		{`[1.]`, ErrMalformed},
		{`[.5]`, ErrMalformed},
		{`[1e]`, ErrMalformed},
		{`[tru]`, ErrMalformed},
		{`[NaN]`, ErrMalformed},
		{``, ErrMalformed},
		{strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), ErrMalformed},
		{strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth), nil},
	}
	for _, tt := range tests {
		err := checkJSON(tt.in)
		if !errors.Is(err, tt.want) {
			t.Errorf("checkJSON(%.40q): got %v, want %v", tt.in, err, tt.want)
		}
		if err == nil && !json.Valid([]byte(tt.in)) {
			t.Errorf("checkJSON(%.40q) accepts what encoding/json rejects", tt.in)
		}
	}
}

func TestNumericDate(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1700000000", 1700000000, true},
		{"253402300799", 253402300799, true},
		{"253402300800", 0, false},
		{"9223372036854775808", 0, false},
		{"00", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"1e3", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		d := scanner{s: tt.in}
		got, ok := d.numericDate()
		if got != tt.want || ok != tt.ok {
			t.Errorf("numericDate(%q): got %d, %v, want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
