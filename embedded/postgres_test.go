package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ordergateway/gateway/view"
)

// testPostgreSQLURL is STORE_POSTGRESQL_URL; the test is skipped without it.
func testPostgreSQLURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("STORE_POSTGRESQL_URL")
	if u == "" {
		t.Skip("STORE_POSTGRESQL_URL is not set: run STORE_POSTGRESQL_URL=$(scripts/postgres.sh start) go test ./embedded/ to test the store on PostgreSQL")
	}
	return u
}

// startPostgreSQLStore starts a store on PostgreSQL and connects to it; both
// end with the test.
func startPostgreSQLStore(t *testing.T, pgURL string, shared ...string) (*Mongo, *mongo.Client) {
	t.Helper()
	m, err := StartMongoPostgreSQL(pgURL, "127.0.0.1:0", nil, shared...)
	return m, connectStore(t, m, err)
}

// connectStore connects to store m, which was started with err; the store
// and the client end with the test.
func connectStore(t *testing.T, m *Mongo, err error) *mongo.Client {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	client, err := mongo.Connect(options.Client().ApplyURI(m.URI()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return client
}

// pgConn connects to PostgreSQL directly, to look at what FerretDB made.
func pgConn(t *testing.T, pgURL string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// testDatabase is a new database name, dropped when the test ends.
func testDatabase(t *testing.T, client *mongo.Client, prefix string) string {
	db := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano()%1e12)
	t.Cleanup(func() { _ = client.Database(db).Drop(context.Background()) })
	return db
}

// collectionTable is the table FerretDB keeps a collection in.
func collectionTable(t *testing.T, pg *pgx.Conn, db, collection string) string {
	t.Helper()
	var table string
	q := fmt.Sprintf(`SELECT _jsonb->>'table' FROM %s WHERE _jsonb->>'_id' = $1`, pgx.Identifier{db, pgMetadataTable}.Sanitize())
	if err := pg.QueryRow(context.Background(), q, collection).Scan(&table); err != nil {
		t.Fatalf("table of %s.%s: %v", db, collection, err)
	}
	return table
}

// hasIndex reports whether the table has the named index, valid.
func hasIndex(t *testing.T, pg *pgx.Conn, db, table, index string) bool {
	t.Helper()
	var n int
	err := pg.QueryRow(context.Background(), `SELECT count(*) FROM pg_index i
		JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace s ON s.oid = c.relnamespace
		WHERE s.nspname = $1 AND c.relname = $2 AND ic.relname = $3 AND i.indisvalid`, db, table, index).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// scans is how many times PostgreSQL's statistics say the index and the
// table were scanned.
func scans(t *testing.T, pg *pgx.Conn, db, table, index string) (indexScans, tableScans int64) {
	t.Helper()
	err := pg.QueryRow(context.Background(), `SELECT coalesce((SELECT idx_scan FROM pg_stat_user_indexes WHERE schemaname = $1 AND relname = $2 AND indexrelname = $3), 0),
		coalesce((SELECT seq_scan FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2), 0)`, db, table, index).Scan(&indexScans, &tableScans)
	if err != nil {
		t.Fatal(err)
	}
	return indexScans, tableScans
}

// The store on PostgreSQL keeps documents as they were written, and its
// lookups by _id use the index it adds, also for a collection that was
// small when its first lookups were planned.
func TestStoreOnPostgreSQL(t *testing.T) {
	pgURL := testPostgreSQLURL(t)
	_, client := startPostgreSQLStore(t, pgURL)
	pg := pgConn(t, pgURL)
	ctx := context.Background()
	db := testDatabase(t, client, "embedded")
	coll := client.Database(db).Collection("orders")

	// Round trip: every type the views use, in order.
	at := time.Date(2024, 5, 6, 7, 8, 9, 123e6, time.UTC)
	doc := bson.D{
		{Key: "_id", Value: "ord_1"}, {Key: "customerId", Value: "c-1"}, {Key: "version", Value: int32(3)},
		{Key: "total", Value: bson.D{{Key: "amount", Value: int64(1234567890123)}, {Key: "currencyCode", Value: "EUR"}}},
		{Key: "items", Value: bson.A{bson.D{{Key: "sku", Value: "TEA"}, {Key: "quantity", Value: int32(2)}}, bson.D{{Key: "sku", Value: "CUP"}, {Key: "quantity", Value: int32(1)}}}},
		{Key: "rate", Value: 0.25}, {Key: "open", Value: true}, {Key: "createdAt", Value: bson.NewDateTimeFromTime(at)},
		{Key: "trackingNumber", Value: nil}, {Key: "note", Value: "ünïcödé ✓"},
	}
	if _, err := coll.InsertOne(ctx, doc); err != nil {
		t.Fatal(err)
	}
	var got bson.D
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "ord_1"}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want, _ := bson.MarshalExtJSON(doc, true, false)
	have, _ := bson.MarshalExtJSON(got, true, false)
	if string(want) != string(have) {
		t.Fatalf("round trip:\nwrote %s\nread  %s", want, have)
	}

	// Lookups while the collection is small: PostgreSQL may settle on a
	// generic plan for FerretDB's prepared statement now.
	for i := range 10 {
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "ord_1"}}).Err(); err != nil {
			t.Fatalf("lookup %d: %v", i, err)
		}
	}
	table := collectionTable(t, pg, db, "orders")
	index := pgIDIndexName(table)
	deadline := time.Now().Add(20 * time.Second)
	for !hasIndex(t, pg, db, table, index) {
		if time.Now().After(deadline) {
			t.Fatalf("no index %s on %s.%s after 20 s", index, db, table)
		}
		time.Sleep(50 * time.Millisecond)
	}

	const n = 2000
	var docs []any
	for i := 2; i <= n; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("ord_%d", i)}, {Key: "customerId", Value: fmt.Sprintf("c-%d", i%40)},
			{Key: "version", Value: int32(1)}, {Key: "pad", Value: strings.Repeat("x", 400)}})
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}

	// Lookups by _id now: each one an index scan, none a table scan.
	const lookups = 60
	idx0, seq0 := scans(t, pg, db, table, index)
	start := time.Now()
	for i := range lookups {
		id := fmt.Sprintf("ord_%d", 2+(i*37)%(n-1))
		var d bson.M
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d); err != nil || d["_id"] != id {
			t.Fatalf("FindOne(%s) = %v, %v", id, d, err)
		}
	}
	took := time.Since(start)
	// Statistics reach the shared counters within about 10 s of a backend
	// going idle, so the table scans counted here include some of the
	// commands before the baseline (13 in one run; 0 when the baseline was
	// taken 12 s later): the index scans are what tells.
	deadline = time.Now().Add(30 * time.Second)
	idx, seq := scans(t, pg, db, table, index)
	for idx-idx0 < lookups && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		idx, seq = scans(t, pg, db, table, index)
	}
	if idx-idx0 < lookups || seq-seq0 >= lookups/2 {
		t.Fatalf("%d lookups by _id: %d scans of %s and %d of the table; want one index scan each", lookups, idx-idx0, index, seq-seq0)
	}
	t.Logf("%d lookups by _id at %d documents: %d index scans, %d table scans; %.2f ms each", lookups, n, idx-idx0, seq-seq0,
		float64(took.Microseconds())/1000/lookups)

	// Replaces, upserts and duplicates behave as before.
	if res, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "ord_150"}, {Key: "version", Value: int32(1)}}, bson.D{{Key: "version", Value: int32(2)}}); err != nil || res.MatchedCount != 1 {
		t.Fatalf("guarded ReplaceOne = %+v, %v", res, err)
	}
	if res, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "ord_150"}, {Key: "version", Value: int32(1)}}, bson.D{{Key: "version", Value: int32(3)}}); err != nil || res.MatchedCount != 0 {
		t.Fatalf("ReplaceOne with a stale guard = %+v, %v; want no match", res, err)
	}
	if _, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "new"}}, bson.D{{Key: "version", Value: int32(7)}}, options.Replace().SetUpsert(true)); err != nil {
		t.Fatal(err)
	}
	if c, err := coll.CountDocuments(ctx, bson.D{}); err != nil || c != n+1 {
		t.Fatalf("count = %d, %v; want %d", c, err, n+1)
	}
	if c, err := coll.CountDocuments(ctx, bson.D{{Key: "customerId", Value: "c-7"}}); err != nil || c != n/40 {
		t.Fatalf("count of c-7 = %d, %v; want %d", c, err, n/40)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "ord_7"}}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("duplicate insert: err = %v, want a duplicate key error", err)
	}

	// FerretDB's own view of the indexes is unchanged.
	specs, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 || specs[0].Name != "_id_" {
		t.Fatalf("listIndexes = %+v, want only _id_", specs)
	}

	// A dropped and recreated database is indexed again.
	if err := client.Database(db).Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "again"}}); err != nil {
		t.Fatal(err)
	}
	table = collectionTable(t, pg, db, "orders")
	deadline = time.Now().Add(20 * time.Second)
	for !hasIndex(t, pg, db, table, pgIDIndexName(table)) {
		if time.Now().After(deadline) {
			t.Fatalf("recreated database: no _id lookup index after 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "again"}}).Err(); err != nil {
		t.Fatal(err)
	}
}

// Two stores on one PostgreSQL database: FerretDB caches the collections it
// knows, and a store reloads that cache when the other creates one.
func TestStoreOnPostgreSQLReloadsCatalogChangedElsewhere(t *testing.T) {
	pgURL := testPostgreSQLURL(t)
	ctx := context.Background()
	db := fmt.Sprintf("shared_%d", time.Now().UnixNano()%1e12)
	a, ca := startPostgreSQLStore(t, pgURL, db)
	b, cb := startPostgreSQLStore(t, pgURL, db)
	t.Cleanup(func() { _ = ca.Database(db).Drop(context.Background()) })

	// b loads its cache before the database exists.
	if names, err := cb.Database(db).ListCollectionNames(ctx, bson.D{}); err != nil || len(names) != 0 {
		t.Fatalf("b: collections %v, %v; want none", names, err)
	}
	if _, err := ca.Database(db).Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: "from-a"}}); err != nil {
		t.Fatal(err)
	}
	// within: how long a store takes to see a collection the other created
	// (two looks at the catalog, the restart, and FerretDB's 3 s grace for
	// the connections to the stopped instance).
	within := func(what string, f func() error) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := start.Add(20 * time.Second)
		for {
			err := f()
			if err == nil {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still failing after 20 s: %v", what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	took := within("b reads what a wrote", func() error {
		return cb.Database(db).Collection("orders").FindOne(ctx, bson.D{{Key: "_id", Value: "from-a"}}).Err()
	})
	if _, err := cb.Database(db).Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: "from-b"}}); err != nil {
		t.Fatalf("b writes to the collection a created: %v", err)
	}
	if _, err := cb.Database(db).Collection("customers").InsertOne(ctx, bson.D{{Key: "_id", Value: "c-1"}}); err != nil {
		t.Fatalf("b creates a collection: %v", err)
	}
	took2 := within("a reads the collection b created", func() error {
		return ca.Database(db).Collection("customers").FindOne(ctx, bson.D{{Key: "_id", Value: "c-1"}}).Err()
	})
	within("a writes to it", func() error {
		_, err := ca.Database(db).Collection("customers").ReplaceOne(ctx, bson.D{{Key: "_id", Value: "c-1"}}, bson.D{{Key: "n", Value: 2}})
		return err
	})
	for _, c := range []*mongo.Client{ca, cb} {
		var ids []string
		cur, err := c.Database(db).Collection("orders").Find(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.M
		if err := cur.All(ctx, &docs); err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			ids = append(ids, d["_id"].(string))
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{"from-a", "from-b"}) {
			t.Fatalf("orders = %v, want from-a and from-b", ids)
		}
	}
	if a.Reloads() < 1 || b.Reloads() < 1 {
		t.Fatalf("reloads: a %d, b %d; want at least one each", a.Reloads(), b.Reloads())
	}
	t.Logf("b saw a's collection after %s, a saw b's after %s; reloads: a %d, b %d", took.Round(10*time.Millisecond), took2.Round(10*time.Millisecond), a.Reloads(), b.Reloads())
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://gw:s3cret@db:5432/ferretdb":             "postgres://gw:xxxxx@db:5432/ferretdb",
		"postgres://gw@db:5432/ferretdb":                    "postgres://gw@db:5432/ferretdb",
		"postgres://db/ferretdb?user=gw&password=s3cret":    "postgres://db/ferretdb?password=xxxxx&user=gw",
		"mongodb://u:p%40ss@m:27017/":                       "mongodb://u:xxxxx@m:27017/",
		"postgres://gw:s3cret@db:5432/ferretdb?sslmode=bad": "postgres://gw:xxxxx@db:5432/ferretdb?sslmode=bad",
		"postgres://gw:s3%cret@db/x":                        "postgres://xxxxx@db/x", // not parseable
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := redactIn("cannot connect with s3cret to db", "postgres://gw:s3cret@db/x"); strings.Contains(got, "s3cret") {
		t.Errorf("redactIn left the password in %q", got)
	}
}

func TestPostgreSQLURL(t *testing.T) {
	got, err := postgresURL("postgres://gw@db:5432/ferretdb?sslmode=disable")
	if err != nil || got != "postgres://gw@db:5432/ferretdb?plan_cache_mode=force_custom_plan&sslmode=disable&synchronous_commit=off" {
		t.Errorf("postgresURL = %q, %v", got, err)
	}
	if got, err := postgresURL("postgresql://db/x?plan_cache_mode=auto&synchronous_commit=on"); err != nil || got != "postgresql://db/x?plan_cache_mode=auto&synchronous_commit=on" {
		t.Errorf("postgresURL with plan_cache_mode and synchronous_commit = %q, %v; want them kept", got, err)
	}
	for _, bad := range []string{"mongodb://db/x", "db:5432", "postgres:///x", "postgres://u:pw@db/x\x7f"} {
		_, err := postgresURL(bad)
		if err == nil || strings.Contains(err.Error(), "pw@") {
			t.Errorf("postgresURL(%q): err = %v, want an error without the password", bad, err)
		}
	}
}

// FerretDB's connections commit asynchronously (postgresURL: the settings
// reach PostgreSQL as a pgx connection's runtime parameters, which is how
// FerretDB connects), and Flush returns once the write-ahead log is on disk
// past every write the store acknowledged before it.
func TestFlushMakesAsynchronousCommitsDurable(t *testing.T) {
	pgURL := testPostgreSQLURL(t)
	ferretURL, err := postgresURL(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	ferretSession := pgConn(t, ferretURL)
	for setting, want := range map[string]string{"synchronous_commit": "off", "plan_cache_mode": "force_custom_plan"} {
		var got string
		if err := ferretSession.QueryRow(context.Background(), "SHOW "+setting).Scan(&got); err != nil || got != want {
			t.Errorf("%s in a session with FerretDB's URL: %q, %v; want %q", setting, got, err, want)
		}
	}

	m, client := startPostgreSQLStore(t, pgURL)
	pg := pgConn(t, pgURL)
	coll := client.Database(testDatabase(t, client, "flush")).Collection("orders")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 20 {
		if _, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "o1"}}, bson.D{{Key: "_id", Value: "o1"}, {Key: "n", Value: i}}, options.Replace().SetUpsert(true)); err != nil {
			t.Fatal(err)
		}
	}
	var written, flushed string
	if err := pg.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&written); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var behind bool
	if err := pg.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text, pg_current_wal_flush_lsn() < $1::pg_lsn", written).Scan(&flushed, &behind); err != nil {
		t.Fatal(err)
	}
	if behind {
		t.Errorf("after Flush the WAL is flushed to %s, before the writes' end %s", flushed, written)
	}
}

// view.FilterGuards, which the gateway sets on this store: a guarded
// replace with its version in the filter refuses a stale write and takes a
// fresh one, and PostgreSQL finds each document through an index, not by
// reading the table (at 2,000 documents; on a table of a few dozen rows it
// reads the table, which is cheaper there).
func TestGuardsInTheFilterOnPostgreSQL(t *testing.T) {
	pgURL := testPostgreSQLURL(t)
	m, client := startPostgreSQLStore(t, pgURL)
	pg := pgConn(t, pgURL)
	db := testDatabase(t, client, "guards")
	store, ctx := openViews(t, m, db, true, view.SummaryLane(), view.FilterGuards())
	order := func(id string, v int) view.OrderDoc {
		return view.OrderDoc{ID: id, CustomerID: "c-1", Status: "PENDING", Currency: "EUR", Items: []view.ItemDoc{}, History: []view.ChangeDoc{}, Version: v}
	}
	const stored, n = 2000, 40
	var writes []view.OrderWrite
	for i := range stored {
		writes = append(writes, view.OrderWrite{Doc: order(fmt.Sprintf("ord_%d", i), 1)})
	}
	if err := store.PutOrders(ctx, writes); err != nil {
		t.Fatal(err)
	}
	analyze(ctx, t, pg, db, "orders")
	checkGuardedReplaces(ctx, t, pg, store, db, order, stored, n, func() {})
	got, err := store.OrdersByID(ctx, []string{"ord_0", "ord_1", "ord_2"})
	if err != nil {
		t.Fatal(err)
	}
	if got["ord_0"].Version != 2 || got["ord_1"].Version != 3 || got["ord_2"].Version != 2 {
		t.Fatalf("after the writes: ord_0@%d ord_1@%d ord_2@%d, want 2, 3, 2", got["ord_0"].Version, got["ord_1"].Version, got["ord_2"].Version)
	}
}

// checkGuardedReplaces makes n guarded replaces (ord_0... from version 1 to
// 2) in a collection of stored orders at version 1, then a pair with a
// stale guard (ord_0 from 1) and a fresh one (ord_1 from 2), which must
// conflict; after calls between, and checks in PostgreSQL's statistics that
// every replace found its row by an index and none read the table.
func checkGuardedReplaces(ctx context.Context, t *testing.T, pg *pgx.Conn, store *view.Store, db string, order func(id string, v int) view.OrderDoc, stored, n int, after func()) {
	t.Helper()
	table := collectionTable(t, pg, db, "orders")
	reads := func() (indexScans, rowsReadByTableScans int64) {
		t.Helper()
		if err := pg.QueryRow(ctx, `SELECT coalesce(idx_scan, 0), coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2`,
			db, table).Scan(&indexScans, &rowsReadByTableScans); err != nil {
			t.Fatal(err)
		}
		return indexScans, rowsReadByTableScans
	}
	time.Sleep(time.Second) // the inserts' statistics settle
	idx0, rows0 := reads()
	writes := make([]view.OrderWrite, n)
	for i := range writes {
		writes[i] = view.OrderWrite{Doc: order(fmt.Sprintf("ord_%d", i), 2), Prev: 1}
	}
	if err := store.PutOrders(ctx, writes); err != nil {
		t.Fatalf("fresh writes: %v", err)
	}
	err := store.PutOrders(ctx, []view.OrderWrite{{Doc: order("ord_0", 3), Prev: 1}, {Doc: order("ord_1", 3), Prev: 2}})
	if !errors.Is(err, view.ErrConflict) {
		t.Fatalf("a stale guard: %v, want view.ErrConflict", err)
	}
	after()
	// PostgreSQL's statistics arrive within a second or so.
	idx, rows := reads()
	for deadline := time.Now().Add(30 * time.Second); idx-idx0 < int64(n) && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		idx, rows = reads()
	}
	if idx-idx0 < int64(n) || rows-rows0 >= int64(stored) {
		t.Fatalf("%d guarded replaces at %d documents: %d index scans, %d rows read by table scans; want an index scan each and no table read", n+2, stored, idx-idx0, rows-rows0)
	}
	t.Logf("%d guarded replaces at %d documents: %d index scans, %d rows read by table scans", n+2, stored, idx-idx0, rows-rows0)
}

// analyze has PostgreSQL gather the statistics of a collection's table.
func analyze(ctx context.Context, t *testing.T, pg *pgx.Conn, db, collection string) {
	t.Helper()
	if _, err := pg.Exec(ctx, "ANALYZE "+pgx.Identifier{db, collectionTable(t, pg, db, collection)}.Sanitize()); err != nil {
		t.Fatal(err)
	}
}

// openViews opens the views of database db on store m with its indexes,
// and the _id lookup index at once if idIndex (before the documents:
// building it on a full table would read it, and PostgreSQL reports that
// read seconds later). The store and the context (a minute) end with the
// test.
func openViews(t *testing.T, m *Mongo, db string, idIndex bool, opts ...view.Option) (*view.Store, context.Context) {
	t.Helper()
	store, err := view.Open(m.URI(), db, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	if err := store.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	if idIndex {
		if err := m.IndexIDs(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return store, ctx
}
