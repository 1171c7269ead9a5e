package query

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseTime reads a --from or --to value: an RFC 3339 time
// ("2026-01-02T15:04:05Z", fractional seconds and any offset allowed), a
// date ("2026-01-02", midnight UTC), "now", or a time relative to now: a
// minus sign and a duration, "-30m", "-2h", "-7d", "-1h30m", "-90s" (units
// w weeks, d days, h, m, s, ms; d is 24 h).
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return time.Time{}, fmt.Errorf("empty time")
	case s == "now":
		return now.UTC(), nil
	case strings.HasPrefix(s, "-"):
		d, err := parseRelative(s[1:])
		if err != nil {
			return time.Time{}, fmt.Errorf("time %q: %w", s, err)
		}
		return now.Add(-d).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02), now, or relative (-30m, -2h, -7d)", s)
}

// maxRelative keeps a relative time well inside time.Duration's range.
const maxRelative = 200 * 365 * 24 * time.Hour

// parseRelative reads a sequence of number+unit pairs, such as "1d12h".
func parseRelative(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("no duration after the minus sign")
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("expected a number at %q", s)
		}
		n, err := strconv.ParseFloat(s[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("bad number %q", s[:i])
		}
		s = s[i:]
		j := 0
		for j < len(s) && (s[j] < '0' || s[j] > '9') && s[j] != '.' {
			j++
		}
		var unit time.Duration
		switch s[:j] {
		case "w":
			unit = 7 * 24 * time.Hour
		case "d":
			unit = 24 * time.Hour
		case "h":
			unit = time.Hour
		case "m":
			unit = time.Minute
		case "s":
			unit = time.Second
		case "ms":
			unit = time.Millisecond
		case "":
			return 0, fmt.Errorf("number %v without a unit (w, d, h, m, s, ms)", n)
		default:
			return 0, fmt.Errorf("unknown unit %q (want w, d, h, m, s, ms)", s[:j])
		}
		s = s[j:]
		if n*float64(unit) > float64(maxRelative) {
			return 0, fmt.Errorf("duration too long")
		}
		if total += time.Duration(n * float64(unit)); total > maxRelative {
			return 0, fmt.Errorf("duration too long")
		}
	}
	return total, nil
}
