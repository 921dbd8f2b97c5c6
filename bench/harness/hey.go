package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// HeyResult is what the harness reads from one hey run.
type HeyResult struct {
	TotalSeconds float64        `json:"totalSeconds"`
	RPS          float64        `json:"rps"`
	P50          float64        `json:"p50Ms"`
	P90          float64        `json:"p90Ms"`
	P99          float64        `json:"p99Ms"`
	Slowest      float64        `json:"slowestMs"`
	Statuses     map[int]int64  `json:"statuses"`
	Errors       map[string]int `json:"errors,omitempty"`
}

// Requests is every request hey finished, answered or not.
func (r HeyResult) Requests() int64 {
	var n int64
	for _, c := range r.Statuses {
		n += c
	}
	for _, c := range r.Errors {
		n += int64(c)
	}
	return n
}

// Failed counts answers other than 200 and transport errors.
func (r HeyResult) Failed() int64 {
	n := r.Requests() - r.Statuses[200]
	return n
}

// HeyOptions is one hey invocation: c workers for duration d.
type HeyOptions struct {
	URL      string
	Host     string
	Workers  int
	Duration time.Duration
	Timeout  time.Duration
}

// RunHey runs hey for a duration and parses its report.
func RunHey(ctx context.Context, o HeyOptions) (HeyResult, string, error) {
	args := []string{"-z", o.Duration.String(), "-c", strconv.Itoa(o.Workers), "-t", strconv.Itoa(int(o.Timeout.Seconds()))}
	if o.Host != "" {
		args = append(args, "-host", o.Host)
	}
	args = append(args, o.URL)
	out, err := exec.CommandContext(ctx, "hey", args...).CombinedOutput()
	if err != nil {
		return HeyResult{}, string(out), fmt.Errorf("hey %s: %w: %s", o.URL, err, oneLine(string(out), 300))
	}
	r, err := ParseHey(string(out))
	return r, string(out), err
}

var (
	heyTotal   = regexp.MustCompile(`^\s*Total:\s+([\d.]+) secs`)
	heySlowest = regexp.MustCompile(`^\s*Slowest:\s+([\d.]+) secs`)
	heyRPS     = regexp.MustCompile(`^\s*Requests/sec:\s+([\d.]+)`)
	heyPct     = regexp.MustCompile(`^\s*(\d+)% in ([\d.]+) secs`)
	heyStatus  = regexp.MustCompile(`^\s*\[(\d+)\]\s+(\d+) responses`)
	heyError   = regexp.MustCompile(`^\s*\[(\d+)\]\s+(.+)$`)
)

// ParseHey reads hey's default text report.
func ParseHey(out string) (HeyResult, error) {
	r := HeyResult{Statuses: map[int]int64{}, Errors: map[string]int{}}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var sawSummary bool
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Summary:"):
			section, sawSummary = "summary", true
			continue
		case strings.HasPrefix(line, "Latency distribution:"):
			section = "latency"
			continue
		case strings.HasPrefix(line, "Status code distribution:"):
			section = "status"
			continue
		case strings.HasPrefix(line, "Error distribution:"):
			section = "error"
			continue
		case line != "" && line[0] != ' ' && line[0] != '\t':
			section = ""
			continue
		}
		switch section {
		case "summary":
			if m := heyTotal.FindStringSubmatch(line); m != nil {
				r.TotalSeconds, _ = strconv.ParseFloat(m[1], 64)
			} else if m := heySlowest.FindStringSubmatch(line); m != nil {
				v, _ := strconv.ParseFloat(m[1], 64)
				r.Slowest = v * 1e3
			} else if m := heyRPS.FindStringSubmatch(line); m != nil {
				r.RPS, _ = strconv.ParseFloat(m[1], 64)
			}
		case "latency":
			if m := heyPct.FindStringSubmatch(line); m != nil {
				v, _ := strconv.ParseFloat(m[2], 64)
				switch m[1] {
				case "50":
					r.P50 = v * 1e3
				case "90":
					r.P90 = v * 1e3
				case "99":
					r.P99 = v * 1e3
				}
			}
		case "status":
			if m := heyStatus.FindStringSubmatch(line); m != nil {
				code, _ := strconv.Atoi(m[1])
				n, _ := strconv.ParseInt(m[2], 10, 64)
				r.Statuses[code] += n
			}
		case "error":
			if m := heyError.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[1])
				r.Errors[strings.TrimSpace(m[2])] += n
			}
		}
	}
	if !sawSummary {
		return r, fmt.Errorf("hey output has no summary")
	}
	return r, nil
}

// HeyAnswer is one answered request of hey's CSV report (-o csv).
type HeyAnswer struct {
	Status int
	// Sent is when the request was sent, as an offset from hey's start.
	Sent time.Duration
	// Took is the whole exchange.
	Took time.Duration
}

// ParseHeyCSV reads hey's CSV report: one line per answered request.
// Requests that got no answer (connection errors, timeouts) are not in it.
func ParseHeyCSV(out string) ([]HeyAnswer, error) {
	var rows []HeyAnswer
	header := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "response-time,") {
			header = true
			continue
		}
		f := strings.Split(line, ",")
		if !header || len(f) != 8 {
			continue
		}
		took, err1 := strconv.ParseFloat(f[0], 64)
		status, err2 := strconv.Atoi(f[6])
		sent, err3 := strconv.ParseFloat(f[7], 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("hey csv line %q: %w", line, err)
		}
		rows = append(rows, HeyAnswer{Status: status, Sent: fromSeconds(sent), Took: fromSeconds(took)})
	}
	if !header {
		return nil, fmt.Errorf("hey output has no CSV header (was -o csv given?)")
	}
	return rows, nil
}

func fromSeconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
