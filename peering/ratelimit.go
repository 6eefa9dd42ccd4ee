package peering

import (
	"sync"
	"time"
)

// attemptLimiter is a token bucket per key (a peering ID), for the secret
// checks peers drive: a bucket holds up to burst attempts and refills at
// rate per second. The map is bounded by max: when it is full, a full
// bucket (one idle long enough to have refilled, which is as good as
// absent) is dropped, else the longest idle one. It is safe for concurrent
// use.
type attemptLimiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	max     int
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newAttemptLimiter(rate float64, burst, max int, now func() time.Time) *attemptLimiter {
	return &attemptLimiter{rate: rate, burst: float64(burst), max: max, now: now, buckets: map[string]*bucket{}}
}

// refill brings b up to now; the caller holds mu.
func (l *attemptLimiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
	}
	b.last = now
}

// get returns key's bucket, creating it full (evicting one when the map is
// at its bound); the caller holds mu.
func (l *attemptLimiter) get(key string, now time.Time) *bucket {
	if b, ok := l.buckets[key]; ok {
		l.refill(b, now)
		return b
	}
	if len(l.buckets) >= l.max {
		var oldest string
		var oldestAt time.Time
		for k, b := range l.buckets {
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(l.buckets, k)
				oldest = ""
				break
			}
			if oldest == "" || b.last.Before(oldestAt) {
				oldest, oldestAt = k, b.last
			}
		}
		if oldest != "" && len(l.buckets) >= l.max {
			delete(l.buckets, oldest)
		}
	}
	b := &bucket{tokens: l.burst, last: now}
	l.buckets[key] = b
	return b
}

// allow takes one attempt from key's bucket, or reports false when it is
// empty.
func (l *attemptLimiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(key, l.now())
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// exhausted reports whether key's bucket is empty, taking nothing.
func (l *attemptLimiter) exhausted(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return false
	}
	l.refill(b, l.now())
	return b.tokens < 1
}

// size is how many keys the limiter tracks.
func (l *attemptLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
