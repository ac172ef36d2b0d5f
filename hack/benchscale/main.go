// Command benchscale runs a load step against a knactor router and draws the scaling timeline:
// load, callers and pods, and call latency, over time, as a PNG (and the samples as CSV).
// hack/bench-scale.sh runs it against `knactor up`; see docs/benchmarks.md.
//
// Each caller sends POST /v1/actors/{function}/{caller}-{n}/add {"by":1} in a loop over its own
// ten actors, one call at a time, on a kept-alive connection. Every second gets the calls that
// ended in it (count, p50, p99); every 250 ms /metrics gives the function's ready pods (local
// mode's knactor_pods) and the autoscaler's desired pods.
package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// phase is a number of callers held for a while.
type phase struct {
	callers int
	hold    time.Duration
}

func parsePhases(s string) ([]phase, error) {
	var out []phase
	for _, p := range strings.Split(s, ",") {
		d, n, ok := strings.Cut(strings.TrimSpace(p), ":")
		hold, err := time.ParseDuration(d)
		callers, err2 := strconv.Atoi(n)
		if !ok || err != nil || err2 != nil || callers < 0 {
			return nil, fmt.Errorf("phase %q: want DURATION:CALLERS", p)
		}
		out = append(out, phase{callers, hold})
	}
	return out, nil
}

// second is what happened in one second of the run.
type second struct {
	calls, errors int
	lat           []time.Duration
	callers       int
	ready         int // -1 until sampled
	desired       int
}

type recorder struct {
	start time.Time
	mu    sync.Mutex
	secs  []second
}

func (r *recorder) at(t time.Time) *second {
	i := int(t.Sub(r.start) / time.Second)
	for len(r.secs) <= i {
		r.secs = append(r.secs, second{ready: -1, desired: -1})
	}
	return &r.secs[i]
}

func (r *recorder) call(end time.Time, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.at(end)
	if err != nil {
		s.errors++
		return
	}
	s.calls++
	s.lat = append(s.lat, d)
}

func (r *recorder) sample(t time.Time, callers, ready, desired int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.at(t)
	s.callers = max(s.callers, callers)
	if ready >= 0 {
		s.ready = max(s.ready, ready)
	}
	if desired >= 0 {
		s.desired = max(s.desired, desired)
	}
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

func caller(url, function string, id int, stop <-chan struct{}, rec *recorder) {
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		t0 := time.Now()
		resp, err := client.Post(fmt.Sprintf("%s/v1/actors/%s/c%d-%d/add", url, function, id, n%10), "application/json", strings.NewReader(`{"by":1}`))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		end := time.Now()
		rec.call(end, end.Sub(t0), err)
		if err != nil {
			time.Sleep(50 * time.Millisecond) // an error answer is fast: do not spin on it
		}
	}
}

var series = regexp.MustCompile(`^(knactor_pods|knactor_autoscaler_desired_pods)\{([^}]*)\} ([0-9.e+-]+)$`)

// pods reads the function's ready pods and the autoscaler's desired pods from /metrics (-1 when
// absent).
func pods(url, function string) (ready, desired int) {
	ready, desired = -1, -1
	resp, err := client.Get(url + "/metrics")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := series.FindStringSubmatch(sc.Text())
		if m == nil || !strings.Contains(m[2], `function="`+function+`"`) {
			continue
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		switch {
		case m[1] == "knactor_pods" && strings.Contains(m[2], `state="ready"`):
			ready = int(v)
		case m[1] == "knactor_autoscaler_desired_pods":
			desired = max(desired, int(v))
		}
	}
	return
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "the router")
	function := flag.String("function", "counter", "a function with the counter example's add action")
	phasesFlag := flag.String("phases", "15s:1,30s:50,0s:0", "the load step: DURATION:CALLERS,...; the run then waits for zero pods")
	drain := flag.Duration("drain", 90*time.Second, "how long to wait for zero pods after the load")
	out := flag.String("png", "scaling-timeline.png", "the picture")
	csvOut := flag.String("csv", "", "the samples as CSV (optional)")
	title := flag.String("title", "", "the picture's title")
	flag.Parse()
	phases, err := parsePhases(*phasesFlag)
	if err != nil {
		log.Fatal(err)
	}

	rec := &recorder{start: time.Now()}
	var callers atomic.Int64
	samplerStop := make(chan struct{})
	var sampled sync.WaitGroup
	sampled.Add(1)
	go func() {
		defer sampled.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			ready, desired := pods(*url, *function)
			rec.sample(time.Now(), int(callers.Load()), ready, desired)
			select {
			case <-samplerStop:
				return
			case <-t.C:
			}
		}
	}()

	var stops []chan struct{}
	var wg sync.WaitGroup
	for _, ph := range phases {
		for len(stops) < ph.callers {
			stop := make(chan struct{})
			stops = append(stops, stop)
			wg.Add(1)
			go func(id int) { defer wg.Done(); caller(*url, *function, id, stop, rec) }(len(stops))
		}
		for len(stops) > ph.callers {
			close(stops[len(stops)-1])
			stops = stops[:len(stops)-1]
		}
		callers.Store(int64(ph.callers))
		log.Printf("%d callers for %v", ph.callers, ph.hold)
		time.Sleep(ph.hold)
	}
	for _, s := range stops {
		close(s)
	}
	wg.Wait()
	callers.Store(0)
	loadEnd := time.Since(rec.start)
	log.Printf("load over at %v; waiting up to %v for zero pods", loadEnd.Round(time.Second), *drain)
	deadline := time.Now().Add(*drain)
	for time.Now().Before(deadline) {
		if ready, _ := pods(*url, *function); ready == 0 {
			time.Sleep(2 * time.Second) // a little of the flat line after
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	close(samplerStop)
	sampled.Wait()

	rec.mu.Lock()
	secs := slices.Clone(rec.secs)
	rec.mu.Unlock()
	rows := summarize(secs)
	if *csvOut != "" {
		if err := writeCSV(*csvOut, rows); err != nil {
			log.Fatal(err)
		}
	}
	if *title == "" {
		*title = fmt.Sprintf("knactor scaling timeline: %s, load step %s", *function, *phasesFlag)
	}
	if err := drawTimeline(*out, *title, rows); err != nil {
		log.Fatal(err)
	}
	report(os.Stdout, rows, phases)
}

// row is one second, summarized.
type row struct {
	t              int
	callers        int
	rps, errors    int
	p50, p99       float64 // ms; NaN-free: 0 when no call ended
	ready, desired int
}

func summarize(secs []second) []row {
	rows := make([]row, len(secs))
	lastReady, lastDesired := 0, 0
	for i, s := range secs {
		r := row{t: i, callers: s.callers, rps: s.calls, errors: s.errors}
		if len(s.lat) > 0 {
			slices.Sort(s.lat)
			r.p50 = ms(s.lat[len(s.lat)/2])
			r.p99 = ms(s.lat[min(len(s.lat)-1, len(s.lat)*99/100)])
		}
		if s.ready >= 0 {
			lastReady = s.ready
		}
		if s.desired >= 0 {
			lastDesired = s.desired
		}
		r.ready, r.desired = lastReady, lastDesired
		rows[i] = r
	}
	return rows
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func writeCSV(path string, rows []row) error {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"second", "callers", "calls", "errors", "p50_ms", "p99_ms", "ready_pods", "desired_pods"})
	for _, r := range rows {
		_ = w.Write([]string{strconv.Itoa(r.t), strconv.Itoa(r.callers), strconv.Itoa(r.rps), strconv.Itoa(r.errors),
			strconv.FormatFloat(r.p50, 'f', 2, 64), strconv.FormatFloat(r.p99, 'f', 2, 64), strconv.Itoa(r.ready), strconv.Itoa(r.desired)})
	}
	w.Flush()
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// report prints the run's numbers as Markdown: per phase the calls, errors, p50 and p99 and the
// pods, and when the pods reacted.
func report(w io.Writer, rows []row, phases []phase) {
	fmt.Fprintln(w, "| phase | seconds | calls/s | errors | p50 ms | p99 ms | pods (max) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	start := 0
	for i, ph := range phases {
		end := start + int(ph.hold/time.Second)
		if i == len(phases)-1 || ph.hold == 0 {
			end = len(rows)
		}
		var calls, errs, maxPods int
		var p50s, p99s []float64
		for _, r := range rows[min(start, len(rows)):min(end, len(rows))] {
			calls += r.rps
			errs += r.errors
			maxPods = max(maxPods, r.ready)
			if r.rps > 0 {
				p50s = append(p50s, r.p50)
				p99s = append(p99s, r.p99)
			}
		}
		n := max(1, min(end, len(rows))-min(start, len(rows)))
		fmt.Fprintf(w, "| %d callers | %d | %d | %d | %.1f | %.1f | %d |\n", ph.callers, n, calls/n, errs, median(p50s), median(p99s), maxPods)
		start = end
	}
	firstPod, peak, peakAt, zeroAt := -1, 0, 0, -1
	for _, r := range rows {
		if firstPod < 0 && r.ready > 0 {
			firstPod = r.t
		}
		if r.ready > peak {
			peak, peakAt = r.ready, r.t
		}
	}
	for i := len(rows) - 1; i >= 0 && rows[i].ready == 0; i-- {
		zeroAt = rows[i].t
	}
	fmt.Fprintf(w, "\nfirst ready pod at %d s, peak %d pods at %d s, back to zero at %d s (-1: not within the drain)\n", firstPod, peak, peakAt, zeroAt)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}
