package autoscaler

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ebbrun/ebb/api"
)

// Paths of the autoscaler's internal HTTP API, for routers and activators
// in other processes.
const (
	// PathStats takes POST with a JSON array of api.RevisionStat.
	PathStats = "/internal/v1/stats"
	// PathActivate takes POST to PathActivate + "{revision}".
	PathActivate = "/internal/v1/activate/"
	// PathStatus serves GET PathStatus + "{revision}": the revision's last
	// scaling step (Result: observation, decision, keep-alive plan and its
	// inputs), when the sink keeps one.
	PathStatus = "/internal/v1/status/"
)

// statusSource is what a sink offers for PathStatus; the Runner does.
type statusSource interface {
	Status(revision string) (Result, bool)
}

// Sink is what routers and activators talk to: the Runner in process, or a
// Client across processes.
type Sink interface {
	Report(stats []api.RevisionStat)
	Activate(ctx context.Context, revision string) error
}

var (
	_ Sink = (*Runner)(nil)
	_ Sink = (*Client)(nil)
)

// HandlerConfig configures NewHandler.
type HandlerConfig struct {
	// Token, when set, is the bearer token every request must carry.
	Token string
	// MaxBodyBytes bounds a stats request. Default 8 MiB.
	MaxBodyBytes int64
}

// DefaultMaxStatsBody is HandlerConfig.MaxBodyBytes' default: a report of
// every revision of a large installation.
const DefaultMaxStatsBody = 8 << 20

// NewHandler serves the internal API for sink. Errors are api.ErrorBody
// JSON: 400 for a malformed body, 401 without the token, 404 for an unknown
// revision, 413 for an oversized body, 503 when the decision could not be
// stored.
func NewHandler(sink Sink, cfg HandlerConfig) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxStatsBody
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathStats, func(w http.ResponseWriter, r *http.Request) {
		var stats []api.RevisionStat
		body := http.MaxBytesReader(w, r.Body, cfg.MaxBodyBytes)
		if err := api.DecodeStrict(body, &stats); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) || strings.Contains(err.Error(), "request body too large") {
				writeError(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, "stats body exceeds the limit")
				return
			}
			writeError(w, http.StatusBadRequest, api.CodeInvalid, err.Error())
			return
		}
		sink.Report(stats)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+PathActivate+"{revision}", func(w http.ResponseWriter, r *http.Request) {
		rev := r.PathValue("revision")
		if err := api.ValidateQualifiedName("revision", rev); err != nil {
			writeError(w, http.StatusBadRequest, api.CodeInvalid, err.Error())
			return
		}
		err := sink.Activate(r.Context(), rev)
		switch {
		case err == nil:
			w.WriteHeader(http.StatusNoContent)
		case errors.Is(err, ErrUnknownRevision):
			writeError(w, http.StatusNotFound, api.CodeNotFound, err.Error())
		default:
			writeError(w, http.StatusServiceUnavailable, api.CodeInternal, err.Error())
		}
	})
	if src, ok := sink.(statusSource); ok {
		mux.HandleFunc("GET "+PathStatus+"{revision}", func(w http.ResponseWriter, r *http.Request) {
			res, ok := src.Status(r.PathValue("revision"))
			if !ok {
				writeError(w, http.StatusNotFound, api.CodeNotFound, "no scaling state for this revision")
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(res)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cfg.Token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(cfg.Token)) != 1 {
				writeError(w, http.StatusUnauthorized, api.CodeUnauthorized, "missing or wrong bearer token")
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// BaseURL is the autoscaler's address, such as http://127.0.0.1:8090. Required.
	BaseURL string
	// Token is sent as a bearer token when set.
	Token string
	// HTTPClient; optional, a client of its own.
	HTTPClient *http.Client
	// ReportTimeout bounds one Report. Default 2s.
	ReportTimeout time.Duration
	// Logger; optional.
	Logger *slog.Logger
}

// Client reaches a Runner in another process: it is a Sink over HTTP.
type Client struct {
	base    *url.URL
	cfg     ClientConfig
	http    *http.Client
	log     *slog.Logger
	dropped atomic.Uint64
}

// NewClient returns a Client for cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("autoscaler client: base URL %q must be http(s)://host[:port]", cfg.BaseURL)
	}
	if cfg.ReportTimeout == 0 {
		cfg.ReportTimeout = 2 * time.Second
	}
	if cfg.ReportTimeout < 0 {
		return nil, errors.New("autoscaler client: report timeout must not be negative")
	}
	c := &Client{base: u, cfg: cfg, http: cfg.HTTPClient, log: cfg.Logger}
	if c.http == nil {
		c.http = &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: 10 * time.Second,
		}}
	}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c, nil
}

// Report sends stats. It has no error to return, as the in-process Runner
// has none: a failed report is logged and counted (Dropped), and the next
// one carries on, since the autoscaler only needs recent windows.
func (c *Client) Report(stats []api.RevisionStat) {
	if len(stats) == 0 {
		return
	}
	body, err := json.Marshal(stats)
	if err != nil {
		c.drop(len(stats), err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ReportTimeout)
	defer cancel()
	if err := c.post(ctx, PathStats, body); err != nil {
		c.drop(len(stats), err)
	}
}

// Dropped is the number of stats that could not be delivered.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

func (c *Client) drop(n int, err error) {
	c.dropped.Add(uint64(n))
	c.log.Warn("autoscaler stats not delivered", "stats", n, "err", err)
}

// Activate asks the autoscaler for capacity for revision now. An unknown
// revision gives an error wrapping ErrUnknownRevision.
func (c *Client) Activate(ctx context.Context, revision string) error {
	return c.post(ctx, PathActivate+url.PathEscape(revision), nil)
}

func (c *Client) post(ctx context.Context, path string, body []byte) error {
	u := c.base.JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("autoscaler %s: %w", path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("autoscaler %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil
	}
	var eb api.ErrorBody
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&eb)
	msg := eb.Error.Message
	if msg == "" {
		msg = resp.Status
	}
	if resp.StatusCode == http.StatusNotFound && eb.Error.Code == api.CodeNotFound {
		return fmt.Errorf("autoscaler %s: %s: %w", path, msg, ErrUnknownRevision)
	}
	return fmt.Errorf("autoscaler %s: %d %s", path, resp.StatusCode, msg)
}
