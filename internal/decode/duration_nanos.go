package decode

import (
	"strconv"
	"time"
)

// DurationNanos is a time.Duration that reads like Duration (a duration string
// or a number of nanoseconds) but writes a whole number of nanoseconds. That is
// how Consul's API writes the time.Duration fields it gives no custom encoding
// (PassiveHealthCheck.Interval, CookieConfig.TTL), so clients that decode those
// fields into a time.Duration need it. The zero value means "not set".
type DurationNanos time.Duration

// D returns d as a time.Duration.
func (d DurationNanos) D() time.Duration { return time.Duration(d) }

// String returns the Go duration string, or "" for zero.
func (d DurationNanos) String() string { return Duration(d).String() }

// MarshalJSON writes d as a whole number of nanoseconds.
func (d DurationNanos) MarshalJSON() ([]byte, error) {
	return strconv.AppendInt(nil, int64(d), 10), nil
}

// UnmarshalJSON accepts a duration string or a number of nanoseconds.
func (d *DurationNanos) UnmarshalJSON(b []byte) error {
	var x Duration
	if err := x.UnmarshalJSON(b); err != nil {
		return err
	}
	*d = DurationNanos(x)
	return nil
}
