package app

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ordergateway/gateway/view"
)

// The admin listener (ADMIN_ADDR) runs the views commands in this gateway:
// with the embedded stack the data folder, and so the broker and the store,
// belong to the gateway process, and `go run . views ...` asks it instead.
//
// Bounds and authentication: it listens on a loopback address unless
// ADMIN_ALLOW_REMOTE (checkAdmin); every request needs the bearer token
// (ADMIN_TOKEN, or a random one written to DATA_DIR/admin-token, mode 0600,
// which only users who can read the data folder can use); headers are read
// within 10 s and are at most 8 KiB, no request body is read, at most
// adminMaxConns connections are served at once, and one views rebuild or
// switch runs at a time (409 for another). A rebuild or switch runs as long
// as its request: the client going away cancels it.

// adminTokenFile is the generated token's file in the data folder.
const adminTokenFile = "admin-token"

// adminMaxConns bounds the admin listener's connections at once.
const adminMaxConns = 8

// checkAdmin refuses an ADMIN_ADDR other machines may reach unless
// ADMIN_ALLOW_REMOTE, and ADMIN_ALLOW_REMOTE without ADMIN_TOKEN.
func checkAdmin(c Config) error {
	if c.AdminAddr == "" {
		return nil
	}
	host, _, _ := net.SplitHostPort(c.AdminAddr)
	if !isLoopback(host) && !c.AdminAllowRemote {
		return fmt.Errorf("ADMIN_ADDR (--admin-addr) %s: not a loopback address (127.0.0.1, ::1, localhost); set ADMIN_ALLOW_REMOTE=true and ADMIN_TOKEN to listen where other machines reach it", c.AdminAddr)
	}
	if c.AdminAllowRemote && c.AdminToken == "" {
		return errors.New("ADMIN_ALLOW_REMOTE (--admin-allow-remote) needs ADMIN_TOKEN: the generated token is for this host's users only")
	}
	return nil
}

// isLoopback reports whether host names only this machine ("" is every
// interface: not loopback).
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// startAdmin takes ADMIN_ADDR and serves the views commands on it.
func (m *Main) startAdmin() error {
	c := m.Config
	ln, err := net.Listen("tcp", c.AdminAddr)
	if err != nil {
		return fmt.Errorf("ADMIN_ADDR (--admin-addr) %s: %v", c.AdminAddr, listenError(err))
	}
	token := c.AdminToken
	if token == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			ln.Close()
			return err
		}
		token = hex.EncodeToString(b)
		path := filepath.Join(c.DataDir, adminTokenFile)
		if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
			ln.Close()
			return fmt.Errorf("admin token: %w", err)
		}
		if err := writeSecret(path, token); err != nil {
			ln.Close()
			return fmt.Errorf("admin token %s: %w", path, err)
		}
		m.adminTokenPath = path
	}
	m.adminToken = token
	m.adminCtx, m.adminStop = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("POST /views/rebuild", m.adminViews("rebuild"))
	mux.HandleFunc("POST /views/switch", m.adminViews("switch"))
	mux.HandleFunc("POST /views/drop", m.adminViews("drop"))
	mux.HandleFunc("GET /views/status", m.adminViews("status"))
	m.admin = &http.Server{Handler: m.adminAuth(mux), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10,
		ErrorLog: nil}
	capped := &capListener{Listener: ln, max: adminMaxConns, logger: m.Logger}
	m.adminListener = ln
	m.goRun(func() error {
		if err := m.admin.Serve(capped); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	m.Logger.Info("admin listener", "addr", ln.Addr().String(), "token", map[bool]string{true: "ADMIN_TOKEN", false: m.adminTokenPath}[c.AdminToken != ""])
	return nil
}

// writeSecret writes s to path, readable by its owner only.
func writeSecret(path, s string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // a file left by another umask
		return err
	}
	return os.Rename(tmp, path)
}

// adminAuth lets requests with the admin token through.
func (m *Main) adminAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(m.adminToken)) != 1 {
			http.Error(w, "error: the admin token is missing or wrong", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// adminViews runs one views command and streams its output, ending with
// "ok" or "error: ..." on a line of its own.
func (m *Main) adminViews(sub string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		gen := 0
		if sub == "switch" || sub == "drop" {
			g, err := view.ParseGeneration(q.Get("generation"))
			if err != nil {
				http.Error(w, "error: generation: "+err.Error(), http.StatusBadRequest)
				return
			}
			gen = g
		}
		maxGap := int64(DefaultMaxGap)
		if v := q.Get("max-gap"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || n > 1_000_000_000 {
				http.Error(w, "error: max-gap must be from 0 to 1000000000", http.StatusBadRequest)
				return
			}
			maxGap = n
		}
		if (sub == "rebuild" || sub == "switch") && !m.viewsBusy.TryLock() {
			http.Error(w, "error: "+errViewsBusy.Message, http.StatusConflict)
			return
		} else if sub == "rebuild" || sub == "switch" {
			m.viewsBusy.Unlock() // taken again by RebuildViews or SwitchViews (a race loses with errViewsBusy)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		out := &flushWriter{w: w}
		// The command ends with its request, or when the gateway closes.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(m.adminCtx, cancel)()
		if err := m.runViewsCommand(ctx, sub, gen, maxGap, out); err != nil {
			fmt.Fprintln(out, "error:", userText(err))
			return
		}
		fmt.Fprintln(out, "ok")
	}
}

// flushWriter sends each write to the client at once (progress lines).
type flushWriter struct {
	mu sync.Mutex
	w  http.ResponseWriter
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// AdminAddr is the admin listener's address, or "" when it is off.
func (m *Main) AdminAddr() string {
	if m.adminListener == nil {
		return ""
	}
	return m.adminListener.Addr().String()
}

// adminCall runs a views command through the admin listener of the gateway
// that holds the data folder, printing what it streams back.
func adminCall(ctx context.Context, cfg Config, sub string, gen int, maxGap int64, stdout, stderr io.Writer) int {
	if cfg.AdminAddr == "" {
		fmt.Fprintf(stderr, "order-gateway views: a running gateway holds the data folder %s (the embedded stack): start it with ADMIN_ADDR (e.g. 127.0.0.1:9091) and run this with the same ADMIN_ADDR, or stop it and run this again\n", cfg.DataDir)
		return 1
	}
	token := cfg.AdminToken
	if token == "" {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, adminTokenFile))
		if err != nil {
			fmt.Fprintf(stderr, "order-gateway views: the admin token: %v (set ADMIN_TOKEN, or run this as a user who can read the data folder)\n", err)
			return 1
		}
		token = strings.TrimSpace(string(b))
	}
	host, port, _ := net.SplitHostPort(cfg.AdminAddr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	method, path := http.MethodPost, "/views/"+sub
	if sub == "status" {
		method = http.MethodGet
	}
	u := fmt.Sprintf("http://%s%s?max-gap=%d", net.JoinHostPort(host, port), path, maxGap)
	if gen > 0 {
		u += "&generation=" + strconv.Itoa(gen)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		fmt.Fprintln(stderr, "order-gateway views:", err)
		return 1
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "order-gateway views: the gateway's admin listener at %s: %v\n", cfg.AdminAddr, err)
		return 1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 64<<20))
	last := ""
	for sc.Scan() {
		line := sc.Text()
		if last != "" {
			fmt.Fprintln(stdout, last)
		}
		last = line
	}
	switch {
	case resp.StatusCode == http.StatusOK && last == "ok":
		return 0
	case strings.HasPrefix(last, "error: "):
		fmt.Fprintln(stderr, "order-gateway views:", strings.TrimPrefix(last, "error: "))
	default:
		if last != "" {
			fmt.Fprintln(stdout, last)
		}
		fmt.Fprintf(stderr, "order-gateway views: the gateway's answer ended early (HTTP %d)\n", resp.StatusCode)
	}
	return 1
}
