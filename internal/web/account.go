package web

import (
	"strings"
	"time"
)

// Page names of the account pages for [Pages.Render]. Every account page
// (these, PageConsents and the API keys page) carries the shared account
// navigation of templates/account_nav.html.
const (
	PageAccount  = "account_home"
	PageSessions = "account_sessions"
	PagePassword = "account_password"
)

// AccountData fills the account home page.
type AccountData struct {
	Title         string
	Username      string
	Name          string
	Email         string
	EmailVerified bool
	Admin         bool      // the user may open the operator console
	MemberSince   time.Time // when the account was created
	SignedInAt    time.Time // when this session entered a password
	Sessions      int       // active sessions, this one included
	Apps          int       // applications with the user's consent
}

// SessionEntry is one row of the sessions page. It holds no secret: Handle
// names the session but cannot be used to sign in.
type SessionEntry struct {
	Handle    string
	Current   bool   // the session of the browser looking at the page
	Browser   string // a short description of the user agent, see DescribeUserAgent
	UserAgent string // as sent at sign-in (bounded)
	IP        string // the address the user signed in from
	Created   time.Time
	LastSeen  time.Time // zero if not since sign-in
	Expires   time.Time
}

// SessionsData fills the sessions page.
type SessionsData struct {
	Title    string
	Username string
	CSRF     string
	Sessions []SessionEntry
	Others   int    // sessions other than this one
	Notice   string // what the last action did
	Error    string
}

// PasswordData fills the change-password page.
type PasswordData struct {
	Title     string
	Username  string
	CSRF      string
	MinLength int
	MaxLength int
	Error     string
	// Done says the password was changed; Ended is how many other
	// sessions that ended.
	Done  bool
	Ended int
}

// DescribeUserAgent returns a short description such as "Firefox on
// Linux" of a User-Agent header, for people recognising their devices.
// Unknown parts are "Unknown browser" and "an unknown system"; the result
// never holds more than the fixed words below, whatever ua contains.
func DescribeUserAgent(ua string) string {
	if strings.TrimSpace(ua) == "" {
		return "Unknown browser"
	}
	browser := "Unknown browser"
	for _, b := range knownBrowsers { // order matters: Edge and Chrome both say Chrome, Chrome says Safari
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	system := "an unknown system"
	for _, s := range knownSystems {
		if strings.Contains(ua, s.token) {
			system = s.name
			break
		}
	}
	return browser + " on " + system
}

type uaToken struct{ token, name string }

var knownBrowsers = []uaToken{
	{"Edg/", "Edge"},
	{"OPR/", "Opera"},
	{"Firefox/", "Firefox"},
	{"HeadlessChrome/", "Headless Chrome"},
	{"Chromium/", "Chromium"},
	{"Chrome/", "Chrome"},
	{"Safari/", "Safari"},
	{"curl/", "curl"},
	{"Go-http-client/", "Go HTTP client"},
}

var knownSystems = []uaToken{
	{"Android", "Android"},
	{"iPhone", "iOS"},
	{"iPad", "iPadOS"},
	{"CrOS", "ChromeOS"},
	{"Windows", "Windows"},
	{"Mac OS X", "macOS"},
	{"Macintosh", "macOS"},
	{"Linux", "Linux"},
	{"FreeBSD", "FreeBSD"},
}
