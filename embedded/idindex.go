package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB itself uses, registered as "sqlite"
)

// FerretDB 1.24's SQLite backend keeps each collection in a table of JSON
// documents and pushes a filter on _id down to SQL as
// `_ferretdb_sjson->'$._id' = ?`, but the unique _id index it creates is on
// `_ferretdb_sjson->"_id"`. SQLite uses an index only for the exact
// expression, so every find, update or upsert by _id parsed every document of
// the collection: 28 ms per lookup at 5,000 orders, 0.4 ms with an index on
// the expression the queries use. The store adds that index to every
// collection, beside FerretDB's own (FerretDB does not list it, and drops it
// with the table).

// idIndexSuffix names the added index: <table><idIndexSuffix>. FerretDB names
// its own indexes <table>_<mongo index name>; the double underscore keeps
// this one apart from any index a client can name.
const idIndexSuffix = "__gateway_id_lookup"

// idIndexInterval is how often new collections are looked for.
const idIndexInterval = 500 * time.Millisecond

// idIndexer adds the _id lookup index to the collections of every database
// file in dir.
type idIndexer struct {
	dir    string
	logger *slog.Logger
	mu     sync.Mutex // one pass at a time: run's and IndexIDs'
	// seen is each file's modification stamp when all its collections were
	// last found indexed; an unchanged file is not opened again.
	seen map[string]string
}

// run indexes until ctx ends.
func (x *idIndexer) run(ctx context.Context) {
	t := time.NewTicker(idIndexInterval)
	defer t.Stop()
	for {
		if err := x.indexAll(ctx); err != nil && ctx.Err() == nil {
			x.logger.Warn("embedded mongodb: _id lookup index not added", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// indexAll adds the index where it is missing. It returns the first error
// and goes on with the other files.
func (x *idIndexer) indexAll(ctx context.Context) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	files, err := filepath.Glob(filepath.Join(x.dir, "*.sqlite"))
	if err != nil {
		return err
	}
	var first error
	for _, f := range files {
		stamp := fileStamp(f)
		if stamp != "" && x.seen[f] == stamp {
			continue
		}
		if err := indexFile(ctx, f); err != nil {
			if first == nil {
				first = fmt.Errorf("%s: %w", filepath.Base(f), err)
			}
			continue
		}
		x.seen[f] = stamp
	}
	return first
}

// fileStamp changes whenever the database or its write-ahead log is written.
func fileStamp(path string) string {
	var b strings.Builder
	for _, p := range []string{path, path + "-wal"} {
		if st, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%d/%d;", st.ModTime().UnixNano(), st.Size())
		}
	}
	return b.String()
}

// indexFile adds the index to the collections of one database file that lack
// it. A file FerretDB has just removed (a dropped database) is skipped.
func indexFile(ctx context.Context, path string) error {
	q := url.Values{}
	q.Add("mode", "rw") // never create a file FerretDB removed
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.QueryContext(ctx, `SELECT c.table_name FROM _ferretdb_collections c
		WHERE NOT EXISTS (SELECT 1 FROM sqlite_master m WHERE m.type = 'index' AND m.name = c.table_name || ?)
		AND EXISTS (SELECT 1 FROM sqlite_master t WHERE t.type = 'table' AND t.name = c.table_name)`, idIndexSuffix)
	if err != nil {
		if _, statErr := os.Stat(path); errors.Is(statErr, os.ErrNotExist) || strings.Contains(err.Error(), "no such table") {
			return nil // dropped, or not yet initialised by FerretDB
		}
		return err
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range tables {
		stmt := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, t+idIndexSuffix, t)
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			if strings.Contains(err.Error(), "no such table") {
				continue // dropped meanwhile
			}
			return err
		}
	}
	return nil
}
