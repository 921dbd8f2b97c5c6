package harness

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// WrkResult is what the harness reads from one wrk run.
type WrkResult struct {
	Requests    int64   `json:"requests"`
	RPS         float64 `json:"rps"`
	P50         float64 `json:"p50Ms"`
	P75         float64 `json:"p75Ms"`
	P90         float64 `json:"p90Ms"`
	P99         float64 `json:"p99Ms"`
	Non2xx      int64   `json:"non2xx"`
	SocketErrs  int64   `json:"socketErrors"`
	Duration    string  `json:"duration"`
	Connections int     `json:"connections"`
}

// WrkOptions is one wrk invocation. wrk runs with --latency so that its
// output carries the percentiles.
type WrkOptions struct {
	URL         string
	Host        string // Host header; empty keeps the URL's
	Connections int
	Threads     int
	Duration    time.Duration
	Script      string // optional lua script (for request bodies)
}

// RunWrk runs wrk and parses its report.
func RunWrk(ctx context.Context, o WrkOptions) (WrkResult, string, error) {
	args := []string{
		"-t" + strconv.Itoa(o.Threads), "-c" + strconv.Itoa(o.Connections),
		"-d" + strconv.Itoa(int(o.Duration.Round(time.Second)/time.Second)) + "s", "--latency", "--timeout", "10s",
	}
	if o.Host != "" {
		args = append(args, "-H", "Host: "+o.Host)
	}
	if o.Script != "" {
		args = append(args, "-s", o.Script)
	}
	args = append(args, o.URL)
	out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	if err != nil {
		return WrkResult{}, string(out), fmt.Errorf("wrk %s: %w: %s", o.URL, err, strings.TrimSpace(string(out)))
	}
	r, err := ParseWrk(string(out))
	if err != nil {
		return WrkResult{}, string(out), err
	}
	r.Duration = o.Duration.String()
	r.Connections = o.Connections
	return r, string(out), nil
}

var (
	wrkPct      = regexp.MustCompile(`^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$`)
	wrkTotal    = regexp.MustCompile(`^\s*(\d+) requests in`)
	wrkRPS      = regexp.MustCompile(`^Requests/sec:\s+([\d.]+)`)
	wrkNon2xx   = regexp.MustCompile(`^\s*Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSockErrs = regexp.MustCompile(`^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// ParseWrk reads wrk's text report (run with --latency).
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	var sawRPS bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := wrkPct.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			v *= map[string]float64{"us": 1e-3, "ms": 1, "s": 1e3, "m": 60e3}[m[3]]
			switch m[1] {
			case "50":
				r.P50 = v
			case "75":
				r.P75 = v
			case "90":
				r.P90 = v
			case "99":
				r.P99 = v
			}
		} else if m := wrkTotal.FindStringSubmatch(line); m != nil {
			r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
		} else if m := wrkRPS.FindStringSubmatch(line); m != nil {
			r.RPS, _ = strconv.ParseFloat(m[1], 64)
			sawRPS = true
		} else if m := wrkNon2xx.FindStringSubmatch(line); m != nil {
			r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
		} else if m := wrkSockErrs.FindStringSubmatch(line); m != nil {
			for _, s := range m[1:] {
				n, _ := strconv.ParseInt(s, 10, 64)
				r.SocketErrs += n
			}
		}
	}
	if !sawRPS || r.P99 == 0 {
		return r, fmt.Errorf("wrk output has no Requests/sec or latency distribution (was --latency given?)")
	}
	return r, nil
}
