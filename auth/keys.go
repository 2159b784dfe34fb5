package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// urlKeys is a JWK Set at a URL: fetched at start, every JWKSRefresh (by
// jwkset's refresher), and when a token names a kid it does not hold, at
// most every UnknownKeyRefresh. A token with an unknown kid that comes
// before then waits for nothing: it is refused.
type urlKeys struct {
	url    string
	ctx    context.Context
	client *http.Client
	keys   *jwkset.MemoryJWKSet
	kf     keyfunc.Keyfunc
	logger *slog.Logger
	limit  refreshLimit
}

func newURLKeys(ctx context.Context, u string, logger *slog.Logger) (jwt.Keyfunc, error) {
	if p, err := url.Parse(u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
		return nil, errors.New("AUTH_JWKS_URL is not an http:// or https:// URL")
	}
	k := &urlKeys{url: u, ctx: ctx, client: &http.Client{Timeout: 10 * time.Second}, keys: jwkset.NewMemoryStorage(), logger: logger}
	_, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
		Client: k.client, Ctx: ctx, HTTPTimeout: 10 * time.Second, Storage: k.keys,
		RefreshInterval: JWKSRefresh, NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler: func(_ context.Context, err error) {
			logger.Warn("auth: the JWK Set could not be fetched; tokens are checked with the keys fetched before", "err", err)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("AUTH_JWKS_URL: %v", err)
	}
	if k.kf, err = keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: k.keys}); err != nil {
		return nil, fmt.Errorf("AUTH_JWKS_URL: %v", err)
	}
	return k.keyfunc, nil
}

func (k *urlKeys) keyfunc(t *jwt.Token) (any, error) {
	key, err := k.kf.Keyfunc(t)
	if err == nil || !errors.Is(err, jwkset.ErrKeyNotFound) || !k.limit.allow() {
		return key, err
	}
	// One fetch, into the same keys.
	_, ferr := jwkset.NewStorageFromHTTP(k.url, jwkset.HTTPClientStorageOptions{Client: k.client, Ctx: k.ctx, HTTPTimeout: 10 * time.Second, Storage: k.keys})
	if ferr != nil {
		k.logger.Warn("auth: the JWK Set could not be fetched for a token with an unknown key id", "err", ferr)
		return key, err
	}
	return k.kf.Keyfunc(t)
}

// refreshLimit allows a refresh at most every UnknownKeyRefresh, without
// waiting.
type refreshLimit struct {
	mu   sync.Mutex
	last time.Time
}

func (l *refreshLimit) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && time.Since(l.last) < UnknownKeyRefresh {
		return false
	}
	l.last = time.Now()
	return true
}

// fileKeys is a JWK Set kept in a file: it is read at start, again when the
// file changes (its size or modification time, checked every FileCheck),
// and when a token names an unknown kid (at most every UnknownKeyRefresh).
type fileKeys struct {
	path   string
	logger *slog.Logger

	mu    sync.Mutex
	kf    keyfunc.Keyfunc
	raw   []byte
	stamp fileStamp
	limit refreshLimit
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func newFileKeys(ctx context.Context, path string, logger *slog.Logger) (*fileKeys, error) {
	f := &fileKeys{path: path, logger: logger}
	if err := f.reload(); err != nil {
		return nil, fmt.Errorf("AUTH_JWKS_FILE: %v", err)
	}
	go func() {
		t := time.NewTicker(FileCheck)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if f.changed() {
					if err := f.reload(); err != nil {
						logger.Warn("auth: AUTH_JWKS_FILE could not be read again; tokens are checked with the keys read before", "err", err)
					}
				}
			}
		}
	}()
	return f, nil
}

func (f *fileKeys) changed() bool {
	st, err := os.Stat(f.path)
	if err != nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return st.Size() != f.stamp.size || !st.ModTime().Equal(f.stamp.mod)
}

// reload reads the file and, if it holds a JWK Set, uses it from now on.
func (f *fileKeys) reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.path)
	if err != nil {
		return errors.New("the file cannot be read")
	}
	raw, err := os.ReadFile(f.path)
	if err != nil {
		return errors.New("the file cannot be read")
	}
	f.stamp = fileStamp{size: st.Size(), mod: st.ModTime()}
	if f.kf != nil && bytes.Equal(raw, f.raw) {
		return nil
	}
	kf, err := keyfunc.NewJWKSetJSON(raw)
	if err != nil {
		return errors.New("the file does not hold a JWK Set")
	}
	if keys, err := kf.Storage().KeyReadAll(context.Background()); err != nil || len(keys) == 0 {
		return errors.New("the file's JWK Set holds no key this gateway can use")
	}
	f.kf, f.raw = kf, raw
	return nil
}

// keyfunc is the jwt.Keyfunc: the key the token's kid names, after reading
// the file again if it does not hold one (at most every UnknownKeyRefresh).
func (f *fileKeys) keyfunc(t *jwt.Token) (any, error) {
	f.mu.Lock()
	kf := f.kf
	f.mu.Unlock()
	key, err := kf.Keyfunc(t)
	if err == nil || !errors.Is(err, jwkset.ErrKeyNotFound) {
		return key, err
	}
	if !f.changed() && !f.limit.allow() {
		return key, err
	}
	if rerr := f.reload(); rerr != nil {
		f.logger.Warn("auth: AUTH_JWKS_FILE could not be read again", "err", rerr)
		return key, err
	}
	f.mu.Lock()
	kf = f.kf
	f.mu.Unlock()
	return kf.Keyfunc(t)
}
