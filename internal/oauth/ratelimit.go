package oauth

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// errRateLimited is the error code of a token request over the client's
// rate limit, answered with 429 and Retry-After. RFC 6749 has no code for
// it; this is the one the guard middleware uses for an API key over its
// limit, so a client sees the same word for the same condition.
const errRateLimited = "rate_limited"

// loginFailurePolicy is the login throttle's delay schedule (see
// throttle.go), for a shared failure counter.
var loginFailurePolicy = ratelimit.FailurePolicy{Base: time.Second, Max: maxThrottleDelay, Forget: throttleForget}

// initRateLimits sets up the token endpoint's limiter and, with
// Config.SharedLimits, the shared login throttle.
func (p *Provider) initRateLimits() {
	if p.cfg.RateLimiter == nil {
		p.cfg.RateLimiter = ratelimit.NewLocal(p.now)
	}
	if p.cfg.SharedLimits != nil {
		t := p.flow.throttle
		t.shared = p.cfg.SharedLimits.Failures(localThrottle{t}, loginFailurePolicy)
	}
}

// allowClient applies c's rate limit to a token request (after the client
// authenticated). It answers the request and returns false when the client
// is over its limit: 429 with Retry-After and error "rate_limited".
func (p *Provider) allowClient(w http.ResponseWriter, r *http.Request, c *store.Client) bool {
	if c.RateLimit <= 0 || c.RateWindow <= 0 {
		return true
	}
	d, err := p.cfg.RateLimiter.Allow(r.Context(), "client:"+c.ID, c.RateLimit, c.RateWindow)
	if err != nil {
		// Only a limiter without fallback fails; answer like any other
		// dependency that is down, without refusing for good.
		p.log.Error("token: rate limit", "client_id", c.ID, "err", err)
		w.Header().Set("Retry-After", "1")
		writeTokenError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "try again later")
		return false
	}
	if d.Allowed {
		return true
	}
	secs := int64(max(1, (d.RetryAfter+time.Second-1)/time.Second))
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	p.log.Debug("token: client over its rate limit", "client_id", c.ID, "limit", c.RateLimit, "window", c.RateWindow.String())
	writeTokenError(w, http.StatusTooManyRequests, errRateLimited, "rate limit exceeded")
	return false
}
