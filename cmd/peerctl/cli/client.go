package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults and environment variables for reaching an agent.
const (
	// DefaultHTTPAddr is the agent address used when neither -http-addr nor
	// PEERD_HTTP_ADDR is set (Consul's default port).
	DefaultHTTPAddr = "127.0.0.1:8500"
	// EnvHTTPAddr names the environment variable holding the agent address.
	EnvHTTPAddr = "PEERD_HTTP_ADDR"
	// EnvHTTPToken names the environment variable holding the ACL token.
	EnvHTTPToken = "PEERD_HTTP_TOKEN"
	// EnvConsulHTTPToken and EnvConsulHTTPTokenFile are Consul's, read
	// when neither -token, -token-file nor PEERD_HTTP_TOKEN is set.
	EnvConsulHTTPToken     = "CONSUL_HTTP_TOKEN"
	EnvConsulHTTPTokenFile = "CONSUL_HTTP_TOKEN_FILE"

	// DefaultTimeout bounds a whole request when ClientConfig.Timeout is 0.
	DefaultTimeout = 30 * time.Second
	// DefaultDialTimeout bounds connecting to the agent.
	DefaultDialTimeout = 5 * time.Second

	// maxResponseBytes caps how much of an answer the client reads.
	maxResponseBytes = 64 << 20
)

// ClientConfig configures a [Client].
type ClientConfig struct {
	// Address is the agent's HTTP address, "host:port" or
	// "http://host:port" ("https://" is passed through). Empty means
	// DefaultHTTPAddr.
	Address string

	// Token is sent as the X-Consul-Token header when not empty.
	Token string

	// Timeout bounds each request from dialing to the end of the body.
	// Zero means DefaultTimeout.
	Timeout time.Duration

	// TLS configures https:// connections (a CA, a client certificate, a
	// server name); nil = Go's defaults (the system's roots). Unused with
	// Transport.
	TLS *tls.Config

	// Transport sends the requests. Nil means a clone of
	// http.DefaultTransport whose dials time out after DefaultDialTimeout.
	Transport http.RoundTripper
}

// Client is a small client for an agent's Consul-compatible HTTP API. It
// speaks JSON, sends the token, and turns non-2xx answers into
// [*StatusError] and failed connections into [*ConnectError]. It is safe
// for concurrent use.
type Client struct {
	base  string // scheme://host[:port][/prefix], no trailing slash
	token string
	hc    *http.Client
}

// NewClient returns a client for cfg.Address, or an error if the address
// cannot be used.
func NewClient(cfg ClientConfig) (*Client, error) {
	base, err := parseAddress(cfg.Address)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext
		if cfg.TLS != nil {
			t.TLSClientConfig = cfg.TLS.Clone()
		}
		rt = t
	}
	return &Client{
		base:  base,
		token: cfg.Token,
		hc:    &http.Client{Transport: rt, Timeout: timeout},
	}, nil
}

// parseAddress turns "host:port" or "http://host:port" into a base URL.
func parseAddress(addr string) (string, error) {
	if addr == "" {
		addr = DefaultHTTPAddr
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("invalid agent address %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("invalid agent address %q: scheme %q is not supported, want http://, https:// or host:port", addr, u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("invalid agent address %q: no host, want host:port or http://host:port", addr)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("invalid agent address %q: want host:port or http://host:port only", addr)
	}
	return strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
}

// Address returns the agent's base URL, e.g. "http://127.0.0.1:8500".
func (c *Client) Address() string { return c.base }

// Response is a 2xx answer from the agent.
type Response struct {
	// StatusCode is the HTTP status, 200 to 299.
	StatusCode int
	// Index is the X-Consul-Index header, 0 when absent or not a number.
	Index uint64
	// Body is the answer's body as sent.
	Body []byte
}

// Decode unmarshals the JSON body into v.
func (r *Response) Decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode agent response: %w", err)
	}
	return nil
}

// Get sends a GET request; see [Client.Do].
func (c *Client) Get(ctx context.Context, path string, query url.Values) (*Response, error) {
	return c.Do(ctx, http.MethodGet, path, query, nil)
}

// Put sends a PUT request; see [Client.Do].
func (c *Client) Put(ctx context.Context, path string, query url.Values, body any) (*Response, error) {
	return c.Do(ctx, http.MethodPut, path, query, body)
}

// Post sends a POST request; see [Client.Do].
func (c *Client) Post(ctx context.Context, path string, query url.Values, body any) (*Response, error) {
	return c.Do(ctx, http.MethodPost, path, query, body)
}

// Delete sends a DELETE request; see [Client.Do].
func (c *Client) Delete(ctx context.Context, path string, query url.Values) (*Response, error) {
	return c.Do(ctx, http.MethodDelete, path, query, nil)
}

// Do sends one request to path (e.g. "/v1/agent/members", with any
// variable segments already escaped with url.PathEscape) plus query.
// A nil body sends none; a []byte or json.RawMessage is sent as is; any
// other value is sent as its JSON encoding.
//
// A non-2xx answer returns a [*StatusError]; failing to connect returns a
// [*ConnectError].
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body any) (*Response, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		var b []byte
		switch v := body.(type) {
		case []byte:
			b = v
		case json.RawMessage:
			b = v
		default:
			var err error
			if b, err = json.Marshal(v); err != nil {
				return nil, fmt.Errorf("encode %s %s request: %w", method, path, err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("build %s %s request: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("X-Consul-Token", c.token)
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil && isDialError(err) {
			return nil, &ConnectError{Address: c.base, Err: err}
		}
		if hint := tlsHint(err); hint != "" {
			return nil, fmt.Errorf("%s %s: %w (%s)", method, u, err, hint)
		}
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read response: %w", method, u, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &StatusError{
			Method:     method,
			Path:       path,
			StatusCode: resp.StatusCode,
			Body:       strings.TrimSpace(string(data)),
		}
	}
	index, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	return &Response{StatusCode: resp.StatusCode, Index: index, Body: data}, nil
}

// StatusError is a non-2xx answer from the agent. Its message follows
// Consul's API client, "Unexpected response code: 400 (the body)", so
// scripts and people who know Consul's errors recognise it.
type StatusError struct {
	// Method and Path are the request's, e.g. "PUT" and "/v1/config".
	Method, Path string
	// StatusCode is the HTTP status.
	StatusCode int
	// Body is the answer's body with surrounding white space removed.
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("Unexpected response code: %d", e.StatusCode)
	}
	return fmt.Sprintf("Unexpected response code: %d (%s)", e.StatusCode, e.Body)
}

// ConnectError is a request that never reached the agent: the connection
// was refused, the name did not resolve, or dialing timed out.
type ConnectError struct {
	// Address is the agent's base URL.
	Address string
	// Err is the transport's error.
	Err error
}

func (e *ConnectError) Error() string {
	const hint = "is the agent running? set -http-addr or " + EnvHTTPAddr
	if errors.Is(e.Err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("could not reach peerd at %s: %s", e.Address, hint)
	}
	cause := e.Err
	var uerr *url.Error
	if errors.As(cause, &uerr) {
		cause = uerr.Err // drop the repeated method and URL
	}
	return fmt.Sprintf("could not reach peerd at %s (%v): %s", e.Address, cause, hint)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// isDialError reports whether err happened before a connection existed.
func isDialError(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr)
}
