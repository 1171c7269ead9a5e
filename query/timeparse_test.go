package query_test

import (
	"testing"
	"time"

	"github.com/xffidx/xffidx/query"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"2026-01-02T15:04:05Z", time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"2026-01-02T15:04:05.123456789Z", time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC)},
		{"2026-01-02T16:04:05+01:00", time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"2026-01-02", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"now", now},
		{"-30m", now.Add(-30 * time.Minute)},
		{"-2h", now.Add(-2 * time.Hour)},
		{"-7d", now.Add(-7 * 24 * time.Hour)},
		{"-1w", now.Add(-7 * 24 * time.Hour)},
		{"-1h30m", now.Add(-90 * time.Minute)},
		{"-90s", now.Add(-90 * time.Second)},
		{"-1.5h", now.Add(-90 * time.Minute)},
		{"-250ms", now.Add(-250 * time.Millisecond)},
	} {
		got, err := query.ParseTime(c.in, now)
		if err != nil || !got.Equal(c.want) || got.Location() != time.UTC {
			t.Errorf("%q: %v %v, want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "-", "-2", "-2x", "2h", "yesterday", "2026-13-01", "-h", "-1000000w", "2026-01-02 15:04:05"} {
		if got, err := query.ParseTime(bad, now); err == nil {
			t.Errorf("%q accepted as %v", bad, got)
		}
	}
}
