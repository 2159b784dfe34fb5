package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgreSQLStore is the embedded store on PostgreSQL: see Start.
type PostgreSQLStore struct {
	URL  string // postgres://user:password@host:port/database
	Addr string // where clients connect, e.g. "127.0.0.1:0"
	// Shared names the databases the store serves, which other processes
	// may use at the same time (see Start).
	Shared []string
	// Logger gets the store's own messages (catalog reloads, indexes that
	// could not be added); FerretDBLogger, FerretDB's (Logger if nil).
	Logger, FerretDBLogger *slog.Logger
}

// StartMongoPostgreSQL starts the embedded store on PostgreSQL with one
// logger for its messages and FerretDB's:
// PostgreSQLStore{URL: pgURL, Addr: addr, Logger: logger, Shared: shared}.Start().
func StartMongoPostgreSQL(pgURL, addr string, logger *slog.Logger, shared ...string) (*Mongo, error) {
	return PostgreSQLStore{URL: pgURL, Addr: addr, Logger: logger, Shared: shared}.Start()
}

// Start starts FerretDB with its PostgreSQL backend over c.URL instead of
// SQLite files, for clients at c.Addr. Its contract:
//
//   - The documents live in that PostgreSQL database, one schema per MongoDB
//     database. Nothing is kept on local disk, and no folder needs locking.
//   - c.Shared names the databases the store serves, which other processes
//     may use at the same time (several gateways), so writers must not
//     assume they are the only one (the gateway does not use
//     view.SoleWriter here). FerretDB caches which collections and indexes
//     exist; the store compares that cache with PostgreSQL every
//     pgCatalogInterval and, when another process has created or dropped
//     one, replaces FerretDB with a new instance, which loads it afresh (see
//     pgcatalog.go). The clients' connections are cut then (commands under
//     way fail; the driver reconnects), and until then, for about a second,
//     reads of a collection the cache lacks find nothing and writes to it
//     fail. With no shared database (tests: many databases, one store), any
//     database is served from the cache as first loaded, and only this
//     process may create or drop collections in them.
//   - Clients connect to c.Addr, which stays the same across those
//     replacements (frontend.go).
//   - Every collection of the shared databases (of every FerretDB database
//     in c.URL's if none is named) gets an index for the lookups by _id,
//     which FerretDB's own _id index cannot serve (see pgcatalog.go), within
//     pgCatalogInterval of its creation (IndexIDs: at once).
//   - FerretDB's connections plan each statement for its values
//     (plan_cache_mode=force_custom_plan, unless c.URL sets plan_cache_mode),
//     since a plan made for any value cannot use that index.
//   - It does not wait for PostgreSQL: while the server is down or refuses
//     the credentials, the store's commands fail (the caller retries them).
//     Only a URL that cannot be parsed fails the start.
//   - The password in c.URL is never logged, nor put in an error.
func (c PostgreSQLStore) Start() (*Mongo, error) {
	pgURL, addr, shared := c.URL, c.Addr, c.Shared
	ferretURL, err := postgresURL(pgURL)
	if err != nil {
		return nil, err
	}
	where := "embedded mongodb on postgresql " + RedactURL(pgURL)
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ferretLogger := c.FerretDBLogger
	if ferretLogger == nil {
		ferretLogger = logger
	}
	ferretLogger = slog.New(&lazyAttrs{next: ferretLogger.Handler()})
	pcfg, err := pgxpool.ParseConfig(pgURL) // its errors hide the password
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	pcfg.MaxConns = 2 // the catalog watcher's own pool, beside FerretDB's
	pcfg.ConnConfig.RuntimeParams["application_name"] = "order-gateway"
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	cfg := &ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: "127.0.0.1:0"}, // behind the front (frontend.go)
		Handler:       "postgresql",
		PostgreSQLURL: ferretURL,
		Logger:        ferretLogger,
	}
	db, backend, err := startFerretDB(cfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s: %s", where, redactIn(err.Error(), pgURL))
	}
	front, err := listenFront(addr, backend)
	if err != nil {
		pool.Close()
		runCtx, stop := context.WithCancel(context.Background())
		stop()
		_ = db.Run(runCtx) // closes its listener and backend
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	uri := "mongodb://" + front.addr() + "/"
	watch := &pgCatalog{pool: pool, uri: uri, logger: logger, shared: shared}
	if err := watch.connect(); err != nil {
		front.close()
		pool.Close()
		runCtx, stop := context.WithCancel(context.Background())
		stop()
		_ = db.Run(runCtx)
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reload := make(chan chan struct{}, 1)
	watch.reload = func() <-chan struct{} {
		done := make(chan struct{})
		reload <- done // the watcher waits for done before it asks again
		return done
	}
	pgw, err := newPGWriter(pgURL)
	if err != nil {
		cancel()
		watch.disconnect()
		front.close()
		pool.Close()
		runCtx, stop := context.WithCancel(context.Background())
		stop()
		_ = db.Run(runCtx)
		return nil, fmt.Errorf("%s: %s", where, redactIn(err.Error(), pgURL))
	}
	m := &Mongo{uri: uri, cancel: cancel, done: make(chan struct{}), indexer: watch, flush: func(ctx context.Context) error {
		return flushWAL(ctx, pool, pgURL)
	}, closeExtra: func() {
		watch.disconnect()
		if pgw != nil {
			pgw.close()
		}
		pool.Close()
	}}
	if pgw != nil { // not a nil *pgWriter in the interface
		m.direct = pgw
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watch.run(ctx)
	}()
	go front.serve()
	go func() {
		defer close(m.done)
		var running sync.WaitGroup // FerretDB instances still stopping
		defer running.Wait()
		defer func() { <-watched }()
		for {
			runCtx, stop := context.WithCancel(context.Background())
			running.Add(1)
			go func(db *ferretdb.FerretDB) {
				defer running.Done()
				_ = db.Run(runCtx)
			}(db)
			var done chan struct{}
			select {
			case <-ctx.Done():
				front.close() // first, so that FerretDB has no connections to wait for
				stop()
				return
			case done = <-reload:
			}
			next, backend, err := startFerretDB(cfg)
			for backoff := 100 * time.Millisecond; err != nil; backoff = min(2*backoff, 5*time.Second) {
				logger.Error("embedded mongodb: restarting the store failed; retrying", "err", redactIn(err.Error(), pgURL))
				select {
				case <-ctx.Done():
					front.close()
					stop()
					close(done)
					return
				case <-time.After(backoff):
				}
				next, backend, err = startFerretDB(cfg)
			}
			front.switchTo(backend) // drops the connections to the old one
			stop()
			db = next
			m.reloads.Add(1)
			close(done)
		}
	}()
	return m, nil
}

// flushWAL returns once PostgreSQL's write-ahead log is on disk up to the
// end of every transaction committed before the call: a transaction that
// wrote to the WAL and commits with synchronous_commit on waits for the WAL
// up to its own commit record, which follows every earlier commit's,
// asynchronous or not.
func flushWAL(ctx context.Context, pool *pgxpool.Pool, pgURL string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("embedded mongodb on postgresql: flush: %s", redactIn(err.Error(), pgURL))
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit, a no-op
	// The message is the WAL record without which a commit does not wait
	// (PostgreSQL flushes at a commit only if its transaction wrote to the
	// WAL); it needs no table and no privilege.
	_, err = tx.Exec(ctx, "SELECT set_config('synchronous_commit', 'on', true), pg_logical_emit_message(true, 'order-gateway', 'flush')")
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		return fmt.Errorf("embedded mongodb on postgresql: flush: %s", redactIn(err.Error(), pgURL))
	}
	return nil
}

// startFerretDB creates a FerretDB (not yet running) and returns its
// host:port.
func startFerretDB(cfg *ferretdb.Config) (*ferretdb.FerretDB, string, error) {
	db, err := ferretdb.New(cfg)
	if err != nil {
		return nil, "", err
	}
	u, err := url.Parse(db.MongoDBURI())
	if err != nil {
		return nil, "", err
	}
	return db, u.Host, nil
}

// Reloads is how many times a store on PostgreSQL restarted FerretDB to
// reload its catalog (see PostgreSQLStore.Start).
func (m *Mongo) Reloads() int64 { return m.reloads.Load() }

// Flush returns once every write the store acknowledged before the call is
// durable. The store on PostgreSQL commits FerretDB's writes asynchronously
// (see postgresURL) and flushes PostgreSQL's write-ahead log here; the store
// on SQLite has nothing to flush (docs/embedded.md says what its commits
// keep after an operating system crash).
func (m *Mongo) Flush(ctx context.Context) error {
	if m.flush == nil {
		return nil
	}
	return m.flush(ctx)
}

// postgresURL checks pgURL and returns the URL FerretDB gets: pgURL with
// plan_cache_mode=force_custom_plan unless it sets plan_cache_mode, and
// synchronous_commit=off unless it sets synchronous_commit.
//
// FerretDB 1.24 runs every replace in a transaction of its own; with
// synchronous commits each one waits for a WAL flush (1.5 to 2 ms on this
// project's test machine), which capped the projector at about 300 view
// writes a second. The views are derived from the events topic, and the
// projector commits its Kafka offsets only after Mongo.Flush, so a write an
// asynchronous commit loses in a PostgreSQL crash is one whose events are
// read again.
func postgresURL(pgURL string) (string, error) {
	u, err := url.Parse(pgURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return "", fmt.Errorf("embedded mongodb on postgresql: %q is not a postgres://host:port/database URL", RedactURL(pgURL))
	}
	q := u.Query()
	if !q.Has("plan_cache_mode") {
		q.Set("plan_cache_mode", "force_custom_plan")
	}
	if !q.Has("synchronous_commit") {
		q.Set("synchronous_commit", "off")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// RedactURL hides the password of a connection URL (postgres://,
// mongodb://), in its user information or its password parameter, so that
// it can be logged.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Not parseable: drop everything before the host, if there are
		// credentials.
		if at := strings.LastIndex(raw, "@"); at >= 0 {
			if scheme := strings.Index(raw, "://"); scheme >= 0 && scheme < at {
				return raw[:scheme+3] + "xxxxx" + raw[at:]
			}
			return "xxxxx" + raw[at:]
		}
		return raw
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redactIn removes pgURL's password from msg.
func redactIn(msg, pgURL string) string {
	u, err := url.Parse(pgURL)
	if err != nil {
		return msg
	}
	var pws []string
	if u.User != nil {
		if pw, has := u.User.Password(); has {
			pws = append(pws, pw)
		}
	}
	pws = append(pws, u.Query()["password"]...)
	for _, pw := range pws {
		if pw == "" {
			continue
		}
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
		if esc := url.QueryEscape(pw); esc != pw {
			msg = strings.ReplaceAll(msg, esc, "xxxxx")
		}
	}
	return msg
}
