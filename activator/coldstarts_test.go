package activator

import (
	"testing"
	"time"
)

func TestColdStartsPercentilesOfTheNewestHolds(t *testing.T) {
	a := New(Config{}, nil, nil)
	if n, p50, p99 := a.ColdStarts("fn"); n != 0 || p50 != 0 || p99 != 0 {
		t.Fatalf("no cold starts: %d %v %v", n, p50, p99)
	}
	// Old, slow holds, then coldStartSamples newer ones of 1..256 ms.
	for range 100 {
		a.cold.record("fn", time.Minute)
	}
	for i := range coldStartSamples {
		a.cold.record("fn", time.Duration(i+1)*time.Millisecond)
	}
	n, p50, p99 := a.ColdStarts("fn")
	if n != 100+coldStartSamples {
		t.Fatalf("count %d, want %d", n, 100+coldStartSamples)
	}
	if p50 < 127*time.Millisecond || p50 > 130*time.Millisecond || p99 < 252*time.Millisecond || p99 > 256*time.Millisecond {
		t.Fatalf("p50 %v, p99 %v: want ~128 ms and ~254 ms (the older minute-long holds are gone)", p50, p99)
	}
	if n, _, _ := a.ColdStarts("other"); n != 0 {
		t.Fatal("another function has cold starts")
	}
}
