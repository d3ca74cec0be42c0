package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults of RedisOptions.
const (
	DefaultPrefix        = "gatehouse:rl:"
	DefaultTimeout       = 50 * time.Millisecond
	DefaultProbeInterval = time.Second
)

// ErrBadURL is returned by [NewRedis] for a URL it cannot use.
var ErrBadURL = errors.New("ratelimit: invalid Redis URL")

// RedisOptions configures [NewRedis]. Zero values mean the defaults.
type RedisOptions struct {
	// Prefix starts every key Gatehouse writes. Default DefaultPrefix.
	Prefix string
	// Timeout bounds each call to Redis, so a slow Redis cannot stall
	// requests: past it, the decision falls back. Default 50 ms.
	Timeout time.Duration
	// ProbeInterval is how often an unreachable Redis is probed. Default
	// 1 s.
	ProbeInterval time.Duration
	// Logger receives one line when Redis becomes unreachable and one
	// when it is back. Default slog.Default().
	Logger *slog.Logger
}

// Redis is a Redis server shared by the replicas for their rate limits and
// failure counts, with the health state of the fallback. Create it with
// [NewRedis]; it is safe for concurrent use.
type Redis struct {
	client  *redis.Client
	addr    string
	prefix  string
	timeout time.Duration
	health  *health

	allowed, limited atomic.Uint64
}

// NewRedis checks rawURL (redis://[user:password@]host[:port][/db],
// rediss:// for TLS, or unix://path) and returns a client for it. It does
// no I/O: see [Redis.Connect]. Errors never contain the URL, which may
// hold a password.
func NewRedis(rawURL string, o RedisOptions) (*Redis, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix" {
		return nil, fmt.Errorf("%w: the scheme must be redis://, rediss:// or unix://", ErrBadURL)
	}
	if u.Scheme != "unix" && u.Host == "" {
		return nil, fmt.Errorf("%w: no host", ErrBadURL)
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// Every call carries its own deadline; the client must honour it and
	// must not retry on its own.
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1
	opts.DialTimeout = max(o.Timeout, 250*time.Millisecond)
	opts.DialerRetries = 1
	opts.ReadTimeout, opts.WriteTimeout = o.Timeout, o.Timeout
	opts.PoolTimeout = o.Timeout
	opts.DisableIdentity = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	quietClientLog.Do(func() { redis.SetLogger(debugLog{}) })
	r := &Redis{
		client:  redis.NewClient(opts),
		addr:    opts.Addr,
		prefix:  o.Prefix,
		timeout: o.Timeout,
	}
	// Probes run in the background: they may take longer than a request
	// would be allowed to wait (health.probe bounds them to a second).
	probe := func(ctx context.Context) error { return r.client.Ping(ctx).Err() }
	r.health = &health{log: o.Logger.With("redis", opts.Addr), interval: o.ProbeInterval, ping: probe}
	return r, nil
}

// quietClientLog sends go-redis's own log lines (such as every failed dial
// while Redis is down) to slog.Default at debug level: the fallback logs
// the outage once, at warning level.
var quietClientLog sync.Once

type debugLog struct{}

func (debugLog) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

// Addr returns the Redis server's address (host:port or socket path).
func (r *Redis) Addr() string { return r.addr }

// Ping checks that Redis answers, within the call timeout.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.client.Ping(ctx).Err()
}

// Connect checks that Redis answers (each attempt may take up to a
// second), retrying for up to wait. If it does not, Connect logs a warning
// and the limiters fall back to per-process limits until a background
// probe succeeds; the error is returned for the caller's information only.
func (r *Redis) Connect(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		pctx, cancel := context.WithTimeout(ctx, max(r.timeout, time.Second))
		err := r.client.Ping(pctx).Err()
		cancel()
		if err == nil {
			r.health.up()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.health.failed(err)
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close closes the connections.
func (r *Redis) Close() error { return r.client.Close() }

// Down reports whether Redis is considered unreachable, so that decisions
// are made per process.
func (r *Redis) Down() bool { return r.health.down.Load() }

// Fallbacks returns how many decisions were made locally because Redis
// failed or was down.
func (r *Redis) Fallbacks() uint64 { return r.health.fallbacks.Load() }

// Decisions returns how many requests Redis allowed and refused.
func (r *Redis) Decisions() (allowed, limited uint64) {
	return r.allowed.Load(), r.limited.Load()
}

// Limiter returns a limiter that keeps its buckets in Redis and falls back
// to local while Redis fails. On a nil *Redis it returns local, so callers
// need no special case for a deployment without Redis.
func (r *Redis) Limiter(local Limiter) Limiter {
	if r == nil {
		return local
	}
	return &fallbackLimiter{redis: &redisLimiter{r}, local: local, h: r.health}
}

// Failures returns a failure counter that keeps its counts in Redis and
// falls back to local while Redis fails. On a nil *Redis it returns local.
func (r *Redis) Failures(local FailureCounter, p FailurePolicy) FailureCounter {
	if r == nil {
		return local
	}
	return &fallbackFailures{redis: &redisFailures{r: r, p: p}, local: local, h: r.health}
}

// bucketScript is the token bucket: KEYS[1] is a hash of the tokens left
// ("t") and the time they were counted ("at", µs on the Redis clock, so
// replicas' clocks do not matter); ARGV are the limit and the window in
// µs. It returns {allowed, remaining, retry after in µs}. A bucket expires
// when it would be full again.
var bucketScript = redis.NewScript(`
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
local rate = limit / window
local b = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = limit
  at = now
end
if tokens > limit then tokens = limit end
if now > at then
  tokens = math.min(limit, tokens + (now - at) * rate)
  at = now
end
if tokens < 1 then
  return {0, 0, math.ceil((1 - tokens) / rate)}
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'at', string.format('%.17g', at))
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return {1, math.floor(tokens), 0}
`)

// redisLimiter is the token bucket in Redis; its errors are the fallback's
// to handle.
type redisLimiter struct{ r *Redis }

func (l *redisLimiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, l.r.timeout)
	defer cancel()
	res, err := bucketScript.Run(ctx, l.r.client, []string{l.r.prefix + key},
		limit, window.Microseconds()).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: redis: %w", err)
	}
	if len(res) != 3 {
		return Decision{}, errors.New("ratelimit: redis: unexpected script result")
	}
	if res[0] != 1 {
		l.r.limited.Add(1)
		return Decision{RetryAfter: max(time.Duration(res[2])*time.Microsecond, time.Millisecond)}, nil
	}
	l.r.allowed.Add(1)
	return Decision{Allowed: true, Remaining: int(res[1])}, nil
}

// failScript counts a failure: KEYS[1] is the count (forgotten ARGV[2] ms
// after the last failure), KEYS[2] exists while attempts must wait. ARGV
// are the free failures, Forget, Base and Max in ms. A later, shorter
// delay never shortens a running one.
var failScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local over = n - tonumber(ARGV[1])
if over > 0 then
  local d = tonumber(ARGV[4])
  if over <= 30 then d = math.min(d, tonumber(ARGV[3]) * 2 ^ (over - 1)) end
  if d > 0 and redis.call('PTTL', KEYS[2]) < d then
    redis.call('SET', KEYS[2], '1', 'PX', string.format('%d', d))
  end
end
return n
`)

// redisFailures is a FailureCounter in Redis.
type redisFailures struct {
	r *Redis
	p FailurePolicy
}

func (f *redisFailures) keys(key string) (count, wait string) {
	return f.r.prefix + "fail:" + key, f.r.prefix + "wait:" + key
}

func (f *redisFailures) Wait(ctx context.Context, keys ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, f.r.timeout)
	defer cancel()
	cmds := make([]*redis.DurationCmd, len(keys))
	_, err := f.r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			_, w := f.keys(k)
			cmds[i] = p.PTTL(ctx, w)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ratelimit: redis: %w", err)
	}
	var d time.Duration
	for _, c := range cmds {
		d = max(d, c.Val()) // negative when the key is absent
	}
	return d, nil
}

func (f *redisFailures) Fail(ctx context.Context, key string, free int) error {
	ctx, cancel := context.WithTimeout(ctx, f.r.timeout)
	defer cancel()
	count, wait := f.keys(key)
	err := failScript.Run(ctx, f.r.client, []string{count, wait}, free,
		ms(f.p.Forget), ms(f.p.Base), ms(f.p.Max)).Err()
	if err != nil {
		return fmt.Errorf("ratelimit: redis: %w", err)
	}
	return nil
}

func (f *redisFailures) Reset(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, f.r.timeout)
	defer cancel()
	count, wait := f.keys(key)
	if err := f.r.client.Del(ctx, count, wait).Err(); err != nil {
		return fmt.Errorf("ratelimit: redis: %w", err)
	}
	return nil
}

// ms formats d in whole milliseconds, at least 1.
func ms(d time.Duration) string {
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}
