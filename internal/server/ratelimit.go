package server

import (
	"context"
	"fmt"

	"github.com/gatehouse-dev/gatehouse/internal/ratelimit"
)

// initRateLimits builds the limiter of API keys and clients and, with
// Config.RedisURL, the shared Redis behind it. A malformed URL is an error;
// an unreachable Redis is not: Connect logs a warning and limits are per
// process until Redis answers.
func (s *Server) initRateLimits(ctx context.Context) error {
	s.localLimits = ratelimit.NewLocal(s.cfg.Now)
	s.limiter = s.localLimits
	if s.cfg.RedisURL == "" {
		return nil
	}
	r, err := ratelimit.NewRedis(s.cfg.RedisURL, ratelimit.RedisOptions{Logger: s.log})
	if err != nil {
		return fmt.Errorf("--redis: %w", err)
	}
	s.limits = r
	s.limiter = r.Limiter(s.localLimits)
	if err := r.Connect(ctx, 0); err == nil {
		s.log.Info("rate limits are shared through Redis", "redis", r.Addr())
	}
	return nil
}
