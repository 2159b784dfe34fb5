package view

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/metrics"
	"github.com/ordergateway/gateway/tracing"
)

// MaxPageSize caps the `first` argument of orders.
const MaxPageSize = 100

// Store reads and writes the views in one MongoDB database.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
	// cols are the collections of the generation this Store reads and
	// writes (see Use and At; generations.go).
	cols atomic.Pointer[collections]
	// derived: made by At, sharing the client of the Store it came from
	// (Close leaves the client open).
	derived bool
	// settings are shared by the Stores made by At: one struct, copied
	// whole, so that a new option cannot be lost on the way.
	settings
}

// settings are a Store's options and what its Stores of other generations
// share with it.
type settings struct {
	// flavor is 0 until the server was asked, then flavorMongo or
	// flavorFerret (see onFerretDB).
	flavor *atomic.Int32
	// turn lets one write at a time reach FerretDB (see ferretBulkMax).
	turn *writeTurn
	// summaryTurn, with SummaryLane, lets one summary write at a time
	// reach FerretDB beside the order writes of turn.
	summaryTurn *writeTurn
	// soleWriter: this Store is the database's only writer (SoleWriter).
	soleWriter bool
	// guardsInFilter: FilterGuards.
	guardsInFilter bool
	// errs counts errors by kind (WithErrors); nil counts nothing.
	errs *metrics.Errors
	// tracer traces commands under a span (WithTracer); nil: off.
	tracer *tracing.Tracer
	// direct makes guarded writes past FerretDB (DirectWrites); nil: none.
	direct DirectWriter
	// reader reads documents by _id past FerretDB (DirectReads); nil: none.
	reader DirectReader
}

// Option configures a Store.
type Option func(*Store)

// SoleWriter says that this Store is the only writer of its database (one
// gateway process, one projector), as with the embedded store, whose data
// folder the process locks. A guarded write on FerretDB then
// trusts its Prev instead of first reading the stored guard by _id (a third
// of the projector's store commands under load): the guard is kept by the
// writer's own sequencing, since the projector writes each order from one
// claim and the summaries from one goroutine, taking Prev from its own last
// write or from a read. A write to a document that is no longer there still
// fails with ErrConflict; a change made by another process would be
// overwritten. On MongoDB the guard is in the write's filter either way.
func SoleWriter() Option { return func(s *Store) { s.soleWriter = true } }

// FilterGuards says that the FerretDB behind this Store finds a document by
// _id with an index even when the filter has another field (PostgreSQL,
// with the store's _id lookup index): a guarded replace then has its guard
// in its filter, as on MongoDB, instead of a read of the guards before the
// replaces. FerretDB still applies such a filter by reading, then writing,
// so the guard is no more atomic than the read first, but the write costs
// one store command instead of two.
func FilterGuards() Option { return func(s *Store) { s.guardsInFilter = true } }

// SummaryLane says that the FerretDB behind this Store has a backend that
// takes concurrent writers (PostgreSQL): summary writes then go one at a
// time beside the order writes, which go one at a time too, instead of
// both taking turns. Two writes at once hold at most 2 × (ferretBulkMax+1)
// of FerretDB's PostgreSQL connections (50 by default), and PostgreSQL
// commits them together. Not for SQLite, whose single writer makes
// concurrent writes slower (see ferretBulkMax).
func SummaryLane() Option { return func(s *Store) { s.summaryTurn = &writeTurn{} } }

const (
	flavorMongo  = 1
	flavorFerret = 2
)

// DirectWriter writes views straight into the store's tables, a batch in
// one statement (embedded.Mongo, the store on PostgreSQL), in collection
// coll of database db, documents given as BSON with _id ids[i]:
//
//   - ReplaceGuarded replaces each document whose field guard is prevs[i]
//     with docs[i] and returns how many it replaced;
//   - InsertNew inserts each of docs whose _id is not taken and returns
//     how many it inserted.
//
// An error that errors.Is errors.ErrUnsupported says the batch must go
// through the MongoDB wire instead; so does any other error (the wire path
// reports the store's errors the usual way, and a write that did go
// through reads as a conflict there, which a writer re-reads).
type DirectWriter interface {
	ReplaceGuarded(ctx context.Context, db, coll, guard string, ids []string, prevs []int64, docs [][]byte) (int64, error)
	InsertNew(ctx context.Context, db, coll string, ids []string, docs [][]byte) (int64, error)
}

// DirectWrites makes the Store's guarded writes (PutOrders, PutCustomers)
// through w when it can (see DirectWriter); reads and everything else use
// the MongoDB wire.
func DirectWrites(w DirectWriter) Option { return func(s *Store) { s.direct = w } }

// DirectReader reads documents by _id past the MongoDB wire, as the
// embedded store on PostgreSQL can (embedded.Mongo.FindByIDs): FindByIDs
// returns the BSON of each document of collection coll in database db whose
// _id is one of ids, by id (an id with no document is absent). An error
// means the Store reads through the MongoDB wire instead (counted in the
// direct read fallbacks: "unsupported" if it wraps errors.ErrUnsupported,
// else "failed").
type DirectReader interface {
	FindByIDs(ctx context.Context, db, coll string, ids []string) (map[string][]byte, error)
}

// DirectReads makes the Store's reads by id (Order, Customer, OrdersByID,
// CustomersByID) through r when it can (see DirectReader).
func DirectReads(r DirectReader) Option { return func(s *Store) { s.reader = r } }

// readDirect reads the documents of ids in coll through the Store's
// DirectReader and hands each to add; false (nothing handed over) when the
// Store has none or it failed: read through the wire then.
func readDirect[T any](ctx context.Context, s *Store, coll *mongo.Collection, ids []string, add func(T)) bool {
	if s.reader == nil || len(ids) == 0 {
		return false
	}
	docs, err := s.reader.FindByIDs(ctx, s.db.Name(), coll.Name(), ids)
	if err != nil {
		if ctx.Err() != nil {
			return false // the caller gave up: not the direct read's failure
		}
		reason := "failed"
		if errors.Is(err, errors.ErrUnsupported) {
			reason = "unsupported"
		}
		s.errs.DirectReadFallback(reason)
		return false
	}
	found := make([]T, 0, len(docs))
	for _, raw := range docs {
		var d T
		if err := bson.Unmarshal(raw, &d); err != nil {
			s.errs.DirectReadFallback("unsupported")
			return false
		}
		found = append(found, d)
	}
	for _, d := range found {
		add(d)
	}
	return true
}

// Open connects to uri and uses database. It does not wait for the server:
// the first operation (or Ping) does, for at most a few seconds.
func Open(uri, database string, storeOpts ...Option) (*Store, error) {
	s := &Store{settings: settings{flavor: new(atomic.Int32), turn: &writeTurn{}}}
	for _, o := range storeOpts {
		o(s)
	}
	opts := options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(3 * time.Second).
		SetConnectTimeout(3 * time.Second).
		SetAppName("order-gateway")
	if s.tracer != nil {
		opts.SetMonitor((&commandSpans{t: s.tracer, spans: map[commandKey]trace.Span{}}).monitor())
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		// The driver's parse errors quote parts of the URI; none of them
		// may show its password.
		return nil, &uriError{msg: fmt.Sprintf("mongodb %s: %s", RedactURI(uri), scrub(err.Error(), uri)), err: err}
	}
	db := client.Database(database)
	s.client, s.db = client, db
	s.cols.Store(s.collectionsOf(1))
	return s, nil
}

// uriError is an error about a connection string, shown without its
// password.
type uriError struct {
	msg string
	err error
}

func (e *uriError) Error() string { return e.msg }
func (e *uriError) Unwrap() error { return e.err }

// CheckURI reports a MONGODB_URI that cannot be a MongoDB connection string
// (its scheme is not mongodb:// or mongodb+srv://, or it names no host),
// without connecting, and without its password in the error. The driver
// parses the rest at Open (for mongodb+srv:// that needs DNS).
func CheckURI(uri string) error {
	rest, ok := strings.CutPrefix(uri, "mongodb://")
	if !ok {
		rest, ok = strings.CutPrefix(uri, "mongodb+srv://")
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = rest[at+1:]
	}
	if !ok || rest == "" || strings.HasPrefix(rest, "/") || strings.HasPrefix(rest, "?") {
		return fmt.Errorf("%q is not a mongodb://host:port/ or mongodb+srv://host/ connection string", RedactURI(uri))
	}
	return nil
}

// RedactURI hides the secrets of a connection string (mongodb://,
// postgres://, or a malformed one) before it is logged or shown in an error:
// the password of its user information, and parameters that carry a
// secret (password, sslpassword, tlsCertificateKeyFilePassword,
// authMechanismProperties with an AWS session token, any *secret* or
// *token*). What cannot be parsed as a URL loses everything up to its last
// '@', so a password with characters that break the parse is hidden too.
func RedactURI(raw string) string {
	u, err := url.Parse(raw)
	if err == nil && u.Scheme != "" && u.Opaque == "" && u.Host != "" && !strings.Contains(u.Host, "@") {
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			}
		}
		return secretParams.ReplaceAllString(u.String(), "${1}xxxxx")
	}
	out := raw
	if at := strings.LastIndex(out, "@"); at >= 0 {
		if scheme := strings.Index(out, "://"); scheme >= 0 && scheme < at {
			out = out[:scheme+3] + "xxxxx" + out[at:]
		} else {
			out = "xxxxx" + out[at:]
		}
	}
	return secretParams.ReplaceAllString(out, "${1}xxxxx")
}

// secretParams matches a parameter that carries a secret, in a URL's query
// or a key=value connection string; group 1 is everything up to its value.
var secretParams = regexp.MustCompile(`(?i)((?:^|[?&;\s])[^=&?#;\s]*(?:password|secret|token|authmechanismproperties)[^=&?#;\s]*=)('[^']*'|[^&#;\s]*)`)

// scrub removes from msg the user information of uri (and its password,
// raw and unescaped), in case an error quotes them.
func scrub(msg, uri string) string {
	rest := uri
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return secretParams.ReplaceAllString(msg, "${1}xxxxx")
	}
	userinfo := rest[:at]
	secrets := []string{userinfo}
	if _, pw, ok := strings.Cut(userinfo, ":"); ok && pw != "" {
		secrets = append(secrets, pw)
		if un, err := url.PathUnescape(pw); err == nil && un != pw {
			secrets = append(secrets, un)
		}
	}
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return secretParams.ReplaceAllString(msg, "${1}xxxxx")
}

// Close disconnects; on a Store made by At it does nothing.
func (s *Store) Close(ctx context.Context) error {
	if s.derived {
		return nil
	}
	return s.client.Disconnect(ctx)
}

// Ping checks that the store answers. It returns an UNAVAILABLE error if not.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return s.storeErr(s.client.Ping(ctx, nil))
}

// EnsureIndexes creates the indexes the queries use, skipping those that
// exist. (Asking FerretDB 1.24 to create an existing named index again makes
// it drop the connection, so existing ones are never re-sent.)
func (s *Store) EnsureIndexes(ctx context.Context) error {
	orders := s.cfor(ctx).orders
	want := []struct {
		name string
		keys bson.D
	}{
		{"createdAt_id", bson.D{{Key: "createdAt", Value: -1}, {Key: "_id", Value: -1}}},
		{"customer_createdAt_id", bson.D{{Key: "customerId", Value: 1}, {Key: "createdAt", Value: -1}, {Key: "_id", Value: -1}}},
		{"status_createdAt_id", bson.D{{Key: "status", Value: 1}, {Key: "createdAt", Value: -1}, {Key: "_id", Value: -1}}},
	}
	specs, err := orders.Indexes().ListSpecifications(ctx)
	if err != nil {
		return s.storeErr(err)
	}
	have := map[string]bool{}
	for _, spec := range specs {
		have[spec.Name] = true
	}
	var missing []mongo.IndexModel
	for _, w := range want {
		if !have[w.name] {
			missing = append(missing, mongo.IndexModel{Keys: w.keys, Options: options.Index().SetName(w.name)})
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = orders.Indexes().CreateMany(ctx, missing)
	return s.storeErr(err)
}

// storeErr counts a driver error by kind and maps it: connectivity
// problems become UNAVAILABLE so clients can tell an outage from a bug.
func (s *Store) storeErr(err error) error {
	if err == nil {
		return nil
	}
	s.errs.Store(ErrorKind(err))
	var sse topology.ServerSelectionError
	if errors.As(err, &sse) || mongo.IsNetworkError(err) || mongo.IsTimeout(err) || errors.Is(err, mongo.ErrClientDisconnected) {
		return domain.Hide(domain.CodeUnavailable, "the view store is unavailable; retry later", err)
	}
	return err
}

// Order returns the view of one order, or nil if there is none.
func (s *Store) Order(ctx context.Context, id string) (*OrderDoc, error) {
	var found *OrderDoc
	if readDirect(ctx, s, s.cfor(ctx).orders, []string{id}, func(d OrderDoc) { found = &d }) {
		return found, nil
	}
	var d OrderDoc
	err := s.cfor(ctx).orders.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, s.storeErr(err)
	}
	return &d, nil
}

// Customer returns the summary of one customer, or nil if there is none.
func (s *Store) Customer(ctx context.Context, id string) (*CustomerDoc, error) {
	var found *CustomerDoc
	if readDirect(ctx, s, s.cfor(ctx).customers, []string{id}, func(d CustomerDoc) { found = &d }) {
		return found, nil
	}
	var d CustomerDoc
	err := s.cfor(ctx).customers.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, s.storeErr(err)
	}
	return &d, nil
}

// OrderFilter selects orders; zero fields select everything.
type OrderFilter struct {
	CustomerID    string
	Statuses      []string
	CreatedAfter  *time.Time
	CreatedBefore *time.Time
}

// Page is one page of orders, newest first.
type Page struct {
	Orders      []OrderDoc
	Cursors     []string
	HasNext     bool
	HasPrevious bool
	TotalCount  int64 // 0 unless counted
}

type cursor struct {
	CreatedAt int64  `json:"t"` // unix milliseconds
	ID        string `json:"id"`
}

func encodeCursor(d OrderDoc) string {
	b, _ := json.Marshal(cursor{CreatedAt: d.CreatedAt.UnixMilli(), ID: d.ID})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.ID == "" {
		return c, &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("cursor %q is not one this server issued", s), Field: []string{"after"}}
	}
	return c, nil
}

// Orders returns up to first orders matching f, newest first (by creation
// time, then id), after the cursor after, and, if count, how many orders
// match f in all (a count is a second query, and on FerretDB a scan). Cursors
// name a position, not an offset, so a page stays stable while new orders
// arrive. Errors:
// INVALID_INPUT for a bad cursor or first outside 0..MaxPageSize,
// UNAVAILABLE when the store cannot be reached.
func (s *Store) Orders(ctx context.Context, f OrderFilter, first int, after string, count bool) (Page, error) {
	if first < 0 || first > MaxPageSize {
		return Page{}, &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("first must be between 0 and %d, got %d", MaxPageSize, first), Field: []string{"first"}}
	}
	filter := bson.D{}
	if f.CustomerID != "" {
		filter = append(filter, bson.E{Key: "customerId", Value: f.CustomerID})
	}
	if len(f.Statuses) > 0 {
		filter = append(filter, bson.E{Key: "status", Value: bson.D{{Key: "$in", Value: f.Statuses}}})
	}
	created := bson.D{}
	if f.CreatedAfter != nil {
		created = append(created, bson.E{Key: "$gt", Value: f.CreatedAfter.UTC()})
	}
	if f.CreatedBefore != nil {
		created = append(created, bson.E{Key: "$lt", Value: f.CreatedBefore.UTC().Add(time.Millisecond - 1).Truncate(time.Millisecond)}) // dates are stored in ms: round up, so a sub-ms bound keeps its own millisecond
	}
	if len(created) > 0 {
		filter = append(filter, bson.E{Key: "createdAt", Value: created})
	}
	orders := s.cfor(ctx).orders // one generation for the count and the page
	page := Page{Orders: []OrderDoc{}, HasPrevious: after != ""}
	if count {
		total, err := orders.CountDocuments(ctx, filter)
		if err != nil {
			return Page{}, s.storeErr(err)
		}
		page.TotalCount = total
	}
	if after != "" {
		c, err := decodeCursor(after)
		if err != nil {
			return Page{}, err
		}
		t := time.UnixMilli(c.CreatedAt).UTC()
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "createdAt", Value: bson.D{{Key: "$lt", Value: t}}}},
			bson.D{{Key: "createdAt", Value: t}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: c.ID}}}},
		}})
	}
	if first == 0 {
		return page, nil
	}
	opts := options.Find().SetSort(bson.D{{Key: "createdAt", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(int64(first + 1))
	cur, err := orders.Find(ctx, filter, opts)
	if err != nil {
		return Page{}, s.storeErr(err)
	}
	if err := cur.All(ctx, &page.Orders); err != nil {
		return Page{}, s.storeErr(err)
	}
	if len(page.Orders) > first {
		page.Orders = page.Orders[:first]
		page.HasNext = true
	}
	page.Cursors = make([]string, len(page.Orders))
	for i, d := range page.Orders {
		page.Cursors[i] = encodeCursor(d)
	}
	return page, nil
}

// onFerretDB reports whether the store is FerretDB, asking it once. Its
// SQLite backend pushes a filter down to SQL only when the filter is a single
// _id equality; anything else (an $in, an _id with a version guard) reads and
// decodes the whole collection (about 250 ms at 5,000 orders here), where a
// find by _id takes half a millisecond. So on FerretDB lookups of several ids
// go one id at a time and guarded writes check the guard by _id first.
// MongoDB answers both from its _id index.
func (s *Store) onFerretDB(ctx context.Context) (bool, error) {
	if f := s.flavor.Load(); f != 0 {
		return f == flavorFerret, nil
	}
	var info bson.M
	if err := s.db.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return false, s.storeErr(err)
	}
	f := int32(flavorMongo)
	if _, ok := info["ferretdbVersion"]; ok {
		f = flavorFerret
	}
	s.flavor.Store(f)
	return f == flavorFerret, nil
}

// byIDs finds the documents of coll with the given ids, decoding each with
// add. Errors: UNAVAILABLE when the store cannot be reached.
func byIDs[T any](ctx context.Context, s *Store, coll *mongo.Collection, ids []string, add func(T)) error {
	if len(ids) == 0 || readDirect(ctx, s, coll, ids, add) {
		return nil
	}
	ferret, err := s.onFerretDB(ctx)
	if err != nil {
		return err
	}
	if !ferret && len(ids) > 1 {
		cur, err := coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		if err != nil {
			return s.storeErr(err)
		}
		var docs []T
		if err := cur.All(ctx, &docs); err != nil {
			return s.storeErr(err)
		}
		for _, d := range docs {
			add(d)
		}
		return nil
	}
	// One id per request, a few requests in flight.
	const inFlight = 4
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		next  atomic.Int64
	)
	for range min(inFlight, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) {
					return
				}
				var d T
				err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: ids[i]}}).Decode(&d)
				mu.Lock()
				switch {
				case errors.Is(err, mongo.ErrNoDocuments):
				case err != nil:
					if first == nil {
						first = s.storeErr(err)
					}
				default:
					add(d)
				}
				stop := first != nil
				mu.Unlock()
				if stop {
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// OrdersByID returns the views of the given orders that exist. Errors:
// UNAVAILABLE when the store cannot be reached.
func (s *Store) OrdersByID(ctx context.Context, ids []string) (map[string]OrderDoc, error) {
	out := make(map[string]OrderDoc, len(ids))
	err := byIDs(ctx, s, s.cfor(ctx).orders, ids, func(d OrderDoc) { out[d.ID] = d })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CustomersByID returns the summaries of the given customers that exist.
// Errors: UNAVAILABLE when the store cannot be reached.
func (s *Store) CustomersByID(ctx context.Context, ids []string) (map[string]CustomerDoc, error) {
	out := make(map[string]CustomerDoc, len(ids))
	err := byIDs(ctx, s, s.cfor(ctx).customers, ids, func(d CustomerDoc) { out[d.ID] = d })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ErrConflict means another writer changed the document since it was read.
var ErrConflict = errors.New("view document changed concurrently")

// OrderWrite is one order view to write: Doc, if the stored view is at
// version Prev (0: no view yet).
type OrderWrite struct {
	Doc  OrderDoc
	Prev int
}

// PutOrders writes a batch of order views, new ones in one insert and the
// others in bulk replaces (in chunks on FerretDB), each only if the stored
// view is at its Prev. It
// returns ErrConflict if any stored view was not; the others are written all
// the same, so a caller re-reads and retries only what is left.
func (s *Store) PutOrders(ctx context.Context, writes []OrderWrite) error {
	g := make([]guardedWrite, len(writes))
	for i, w := range writes {
		g[i] = guardedWrite{id: w.Doc.ID, doc: w.Doc, prev: int64(w.Prev)}
	}
	return s.putGuarded(ctx, s.cfor(ctx).orders, "version", true, g)
}

// guardedWrite is one document to write if its stored guard field is at
// prev (0: no document yet).
type guardedWrite struct {
	id   string
	doc  any
	prev int64
}

// putGuarded writes documents to coll, new ones in one insert and the others
// in bulk replaces, each only if its stored guard field (a number that grows
// with every change) is at its prev; see PutOrders. Urgent writes go first on
// FerretDB (see ferretBulkMax).
func (s *Store) putGuarded(ctx context.Context, coll *mongo.Collection, guard string, urgent bool, writes []guardedWrite) error {
	var inserts []any
	var fresh, replaces []guardedWrite
	for _, w := range writes {
		if w.prev == 0 {
			fresh = append(fresh, w)
		} else {
			replaces = append(replaces, w)
		}
	}
	conflict := false
	if len(fresh) > 0 && s.direct != nil {
		if n, ok := s.writeDirect(ctx, coll, guard, fresh); ok {
			conflict = n < int64(len(fresh)) // an _id taken: a duplicate key
			fresh = nil
		}
	}
	for _, w := range fresh {
		inserts = append(inserts, w.doc)
	}
	if len(inserts) > 0 {
		err := s.ferretWrite(ctx, urgent, func() error {
			_, err := coll.InsertMany(ctx, inserts, options.InsertMany().SetOrdered(false))
			return s.storeErr(err) // a duplicate key is counted, and stays one
		})
		switch {
		case mongo.IsDuplicateKeyError(err):
			conflict = true
		case err != nil:
			return err
		}
	}
	if len(replaces) > 0 && s.direct != nil {
		if n, ok := s.writeDirect(ctx, coll, guard, replaces); ok {
			conflict = conflict || n < int64(len(replaces))
			replaces = nil
		}
	}
	if len(replaces) > 0 {
		models, stale, err := s.guardedReplaces(ctx, coll, guard, replaces)
		if err != nil {
			return err
		}
		conflict = conflict || stale
		matched, err := s.replaceAll(ctx, coll, urgent, models)
		if err != nil {
			return err
		}
		conflict = conflict || matched < int64(len(models))
	}
	if conflict {
		return ErrConflict
	}
	return nil
}

// writeDirect makes writes through the DirectWriter: inserts if their prev
// is 0 (all or none of them), guarded replaces otherwise. It reports how
// many it wrote; false if it could not, and the writes must go through the
// MongoDB wire.
func (s *Store) writeDirect(ctx context.Context, coll *mongo.Collection, guard string, writes []guardedWrite) (int64, bool) {
	ids := make([]string, len(writes))
	prevs := make([]int64, len(writes))
	docs := make([][]byte, len(writes))
	for i, w := range writes {
		raw, err := bson.Marshal(w.doc)
		if err != nil {
			s.errs.DirectFallback("unsupported")
			return 0, false
		}
		ids[i], prevs[i], docs[i] = w.id, w.prev, raw
	}
	var n int64
	var err error
	if writes[0].prev == 0 {
		n, err = s.direct.InsertNew(ctx, s.db.Name(), coll.Name(), ids, docs)
	} else {
		n, err = s.direct.ReplaceGuarded(ctx, s.db.Name(), coll.Name(), guard, ids, prevs, docs)
	}
	if err != nil {
		reason := "failed"
		if errors.Is(err, errors.ErrUnsupported) {
			reason = "unsupported"
		}
		s.errs.DirectFallback(reason)
		return 0, false
	}
	return n, true
}

// On FerretDB the store sends one write at a time, and bulk writes in chunks
// of ferretBulkMax replaces:
//   - SQLite has a single writer; concurrent writers wait in its busy handler,
//     which sleeps in steps of up to 100 ms, so two writes at once cost more
//     than two writes one after the other (measured: projection lag p99 of
//     1.2–1.7 s with concurrent writes);
//   - FerretDB's update command keeps each replace's read of the document
//     open until the whole command ends, and each write takes another
//     connection from a pool of 100 per database: with about 100 replaces in
//     flight, every command waits for a connection that only another waiting
//     command can free (FerretDB 1.24, SQLite backend).
//
// Order writes go before waiting summary writes, and chunks keep each turn
// short, so an order write (which live updates wait for) is never queued
// behind a run of summary writes (which nothing waits for).
const ferretBulkMax = 16

// writeTurn is a lock whose urgent waiters go first.
type writeTurn struct {
	mu      sync.Mutex
	cond    *sync.Cond
	busy    bool
	urgents int // urgent waiters
}

// acquire waits for the turn; it returns ctx's error, without the turn, if
// ctx ends first.
func (t *writeTurn) acquire(ctx context.Context, urgent bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cond == nil {
		t.cond = sync.NewCond(&t.mu)
	}
	if urgent {
		t.urgents++
		defer func() {
			t.urgents--
			t.cond.Broadcast() // non-urgent waiters may go now
		}()
	}
	stop := context.AfterFunc(ctx, func() {
		t.mu.Lock()
		t.cond.Broadcast()
		t.mu.Unlock()
	})
	defer stop()
	for t.busy || (!urgent && t.urgents > 0) {
		if err := ctx.Err(); err != nil {
			return err
		}
		t.cond.Wait()
	}
	t.busy = true
	return nil
}

func (t *writeTurn) release() {
	t.mu.Lock()
	t.busy = false
	t.cond.Broadcast()
	t.mu.Unlock()
}

// ferretWrite runs write alone among this store's FerretDB writes, order
// writes (urgent) before summary writes (see ferretBulkMax); on MongoDB it
// just runs it.
func (s *Store) ferretWrite(ctx context.Context, urgent bool, write func() error) error {
	ferret, err := s.onFerretDB(ctx)
	if err != nil {
		return err
	}
	if !ferret {
		return write()
	}
	turn := s.turn
	if !urgent && s.summaryTurn != nil {
		turn = s.summaryTurn
	}
	if err := turn.acquire(ctx, urgent); err != nil {
		return s.storeErr(err)
	}
	defer turn.release()
	if err := ctx.Err(); err != nil {
		return s.storeErr(err)
	}
	return write()
}

// replaceAll sends models as unordered bulk writes, in chunks on FerretDB,
// and returns how many documents matched their filters.
func (s *Store) replaceAll(ctx context.Context, coll *mongo.Collection, urgent bool, models []mongo.WriteModel) (int64, error) {
	ferret, err := s.onFerretDB(ctx)
	if err != nil {
		return 0, err
	}
	chunk := len(models)
	if ferret {
		chunk = ferretBulkMax
	}
	var matched int64
	for len(models) > 0 {
		n := min(chunk, len(models))
		err := s.ferretWrite(ctx, urgent, func() error {
			res, err := coll.BulkWrite(ctx, models[:n], options.BulkWrite().SetOrdered(false))
			if err != nil {
				return s.storeErr(err)
			}
			matched += res.MatchedCount
			return nil
		})
		if err != nil {
			return matched, err
		}
		models = models[n:]
	}
	return matched, nil
}

// versioned holds the guard fields of a stored document.
type versioned struct {
	ID      string `bson:"_id"`
	Version int64  `bson:"version"`
	Rev     int64  `bson:"rev"`
}

func (v versioned) guard(field string) int64 {
	if field == "rev" {
		return v.Rev
	}
	return v.Version
}

// guardedReplaces builds the replace models for writes and reports whether
// any write is stale. On MongoDB the guard is in the filter (_id and the
// guard field), which the server applies atomically. FerretDB applies such a
// filter by reading, then writing, and on SQLite reads the whole collection
// to do it (250 ms at 5,000 orders), so there the guards are read by _id
// first and only the writes whose guard matched are sent, filtered by _id:
// the same check, in the same order, without the scan. A SoleWriter store
// skips that read (see SoleWriter).
func (s *Store) guardedReplaces(ctx context.Context, coll *mongo.Collection, guard string, writes []guardedWrite) ([]mongo.WriteModel, bool, error) {
	ferret, err := s.onFerretDB(ctx)
	if err != nil {
		return nil, false, err
	}
	models := make([]mongo.WriteModel, 0, len(writes))
	if !ferret || (s.guardsInFilter && !s.soleWriter) {
		for _, w := range writes {
			models = append(models, mongo.NewReplaceOneModel().
				SetFilter(bson.D{{Key: "_id", Value: w.id}, {Key: guard, Value: w.prev}}).
				SetReplacement(w.doc))
		}
		return models, false, nil
	}
	if s.soleWriter {
		for _, w := range writes {
			models = append(models, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: w.id}}).SetReplacement(w.doc))
		}
		return models, false, nil
	}
	ids := make([]string, len(writes))
	for i, w := range writes {
		ids[i] = w.id
	}
	current := make(map[string]int64, len(ids))
	if err := byIDs(ctx, s, coll, ids, func(v versioned) { current[v.ID] = v.guard(guard) }); err != nil {
		return nil, false, err
	}
	stale := false
	for _, w := range writes {
		if current[w.id] != w.prev {
			stale = true
			continue
		}
		models = append(models, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: w.id}}).SetReplacement(w.doc))
	}
	return models, stale, nil
}

// CustomerWrite is one customer summary to write: Doc, if the stored
// summary is at revision Prev (0: none yet).
type CustomerWrite struct {
	Doc  CustomerDoc
	Prev int64
}

// PutCustomers writes a batch of customer summaries like PutOrders, each only
// if the stored summary is at its Prev. It returns ErrConflict if any was
// not; the others are written all the same. Summary writes give way to order
// writes on FerretDB.
func (s *Store) PutCustomers(ctx context.Context, writes []CustomerWrite) error {
	g := make([]guardedWrite, len(writes))
	for i, w := range writes {
		g[i] = guardedWrite{id: w.Doc.ID, doc: w.Doc, prev: w.Prev}
	}
	return s.putGuarded(ctx, s.cfor(ctx).customers, "rev", false, g)
}

// Drop removes the views of this Store's generation (DropGeneration
// keeps the generations' record too).
func (s *Store) Drop(ctx context.Context) error {
	c := s.cfor(ctx)
	if err := c.orders.Drop(ctx); err != nil {
		return s.storeErr(err)
	}
	return s.storeErr(c.customers.Drop(ctx))
}
