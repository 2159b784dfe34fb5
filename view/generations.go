package view

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ordergateway/gateway/domain"
)

// The views come in generations (docs/design.md, "Rebuilding the views").
// Generation 1 is the collections orders and customers (the gateway's
// first and, until a rebuild, only ones); generation N ≥ 2 is orders_vN and
// customers_vN. The collection generationsCollection holds one document per
// generation a rebuild created (and one for generation 1 once it is
// dropped), and the active generation document: which generation queries
// read and gateways project. A switch is one write of that document.
const generationsCollection = "view_generations"

// activeID is the _id of the active generation document.
const activeID = "active"

// MaxGeneration bounds generation numbers (a collection name stays short,
// and a number read from a document or a flag is checked against it).
const MaxGeneration = 1_000_000

// FollowInterval is how often Follow reads the active generation document:
// every instance switches within this (plus one store round trip) of the
// write.
const FollowInterval = 250 * time.Millisecond

// Generation states.
const (
	StateBuilding = "building" // a rebuild is projecting it (or died doing so)
	StateBuilt    = "built"    // caught up once; active or kept for a switch back
	StateDropped  = "dropped"  // its collections are gone; its number is not reused
)

// GenerationDoc is one generation's record.
type GenerationDoc struct {
	ID         string    `bson:"_id" json:"-"`
	Generation int       `bson:"generation" json:"generation"`
	State      string    `bson:"state" json:"state"`
	Applied    int64     `bson:"applied" json:"applied"` // events its rebuild applied, as last recorded
	Created    time.Time `bson:"created" json:"created"`
	Updated    time.Time `bson:"updated" json:"updated"`
	Active     bool      `bson:"-" json:"active"`
}

// activeDoc is the active generation document.
type activeDoc struct {
	ID         string    `bson:"_id"`
	Generation int       `bson:"generation"`
	Switched   time.Time `bson:"switched"`
}

// collections are one generation's views.
type collections struct {
	gen       int
	orders    *mongo.Collection
	customers *mongo.Collection
}

// CollectionNames are the names of a generation's collections.
func CollectionNames(gen int) (orders, customers string) {
	if gen <= 1 {
		return "orders", "customers"
	}
	return "orders_v" + strconv.Itoa(gen), "customers_v" + strconv.Itoa(gen)
}

func (s *Store) collectionsOf(gen int) *collections {
	o, c := CollectionNames(gen)
	return &collections{gen: gen, orders: s.db.Collection(o), customers: s.db.Collection(c)}
}

// c is the collections in use now: a method that makes several requests
// takes them once, so that a switch cannot split it.
func (s *Store) c() *collections { return s.cols.Load() }

// pinKey is the context key of a pin (Pin).
type pinKey struct{}

// pin holds the collections the reads under one context use.
type pin struct{ cols atomic.Pointer[collections] }

// Pin returns a context under which the reads of a Store that follows the
// active generation all use one generation: the one active at the first
// read (or the first after Repin). A consistency wait and the read that
// follows it then see the same generation, whatever switch happens between
// them. Stores made by At keep their own generation.
func Pin(ctx context.Context) context.Context { return context.WithValue(ctx, pinKey{}, &pin{}) }

// Repin makes the next read under ctx (see Pin) take the active generation
// again, and pin it. A wait calls it before each look at the store, so that
// it follows a switch.
func Repin(ctx context.Context) {
	if p, ok := ctx.Value(pinKey{}).(*pin); ok {
		p.cols.Store(nil)
	}
}

// cfor is the collections a request under ctx uses: this Store's
// generation, or the one pinned in ctx.
func (s *Store) cfor(ctx context.Context) *collections {
	c := s.cols.Load()
	if s.derived {
		return c
	}
	if p, ok := ctx.Value(pinKey{}).(*pin); ok {
		if p.cols.CompareAndSwap(nil, c) {
			return c
		}
		return p.cols.Load()
	}
	return c
}

// Generation is the generation this Store reads and writes.
func (s *Store) Generation() int { return s.c().gen }

// Use makes this Store read and write generation gen from now on (a switch;
// reads in flight finish on the generation they started on).
func (s *Store) Use(gen int) {
	if s.c().gen != gen {
		s.cols.Store(s.collectionsOf(gen))
	}
}

// At is a Store of generation gen on the same connection (and, on
// FerretDB, the same turn for writes). Use on it does not change s.
func (s *Store) At(gen int) *Store {
	d := &Store{client: s.client, db: s.db, derived: true, settings: s.settings}
	d.cols.Store(s.collectionsOf(gen))
	return d
}

func (s *Store) generations() *mongo.Collection { return s.db.Collection(generationsCollection) }

func generationID(gen int) string { return "v" + strconv.Itoa(gen) }

// ActiveGeneration reads the active generation: 1 when no switch was ever
// made. Errors: UNAVAILABLE when the store cannot be reached.
func (s *Store) ActiveGeneration(ctx context.Context) (int, error) {
	var a activeDoc
	err := s.generations().FindOne(ctx, bson.D{{Key: "_id", Value: activeID}}).Decode(&a)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 1, nil
	}
	if err != nil {
		return 0, s.storeErr(err)
	}
	if a.Generation < 1 || a.Generation > MaxGeneration {
		return 0, fmt.Errorf("the active generation document names generation %d", a.Generation)
	}
	return a.Generation, nil
}

// SetActive makes gen the active generation: one write of the active
// generation document, which every instance follows (Follow).
func (s *Store) SetActive(ctx context.Context, gen int) error {
	_, err := s.generations().ReplaceOne(ctx, bson.D{{Key: "_id", Value: activeID}},
		activeDoc{ID: activeID, Generation: gen, Switched: time.Now().UTC().Truncate(time.Millisecond)},
		options.Replace().SetUpsert(true))
	return s.storeErr(err)
}

// Generations lists the generations, oldest first, with the active one
// marked. Generation 1 is listed (built) unless it was dropped.
func (s *Store) Generations(ctx context.Context) ([]GenerationDoc, error) {
	active, err := s.ActiveGeneration(ctx)
	if err != nil {
		return nil, err
	}
	cur, err := s.generations().Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$ne", Value: activeID}}}},
		options.Find().SetLimit(MaxListedGenerations))
	if err != nil {
		return nil, s.storeErr(err)
	}
	var docs []GenerationDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, s.storeErr(err)
	}
	byGen := map[int]GenerationDoc{}
	for _, d := range docs {
		byGen[d.Generation] = d
	}
	if _, ok := byGen[1]; !ok {
		byGen[1] = GenerationDoc{ID: generationID(1), Generation: 1, State: StateBuilt}
	}
	out := make([]GenerationDoc, 0, len(byGen))
	for g := 1; len(out) < len(byGen) && g <= MaxGeneration; g++ {
		if d, ok := byGen[g]; ok {
			d.Active = g == active
			out = append(out, d)
		}
	}
	return out, nil
}

// MaxListedGenerations bounds the generation records read (each rebuild
// adds one; drop keeps it).
const MaxListedGenerations = 10_000

// NewGeneration records a new generation, numbered one past every
// generation known (dropped ones included: numbers are not reused), in
// state building, and returns its number. Two rebuilds started at once get
// different numbers (the insert of a taken number fails and is retried).
func (s *Store) NewGeneration(ctx context.Context) (int, error) {
	for attempt := 0; attempt < 5; attempt++ {
		gens, err := s.Generations(ctx)
		if err != nil {
			return 0, err
		}
		next := 2
		for _, g := range gens {
			next = max(next, g.Generation+1)
		}
		if next > MaxGeneration {
			return 0, fmt.Errorf("no generation number left (the last is %d)", MaxGeneration)
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		_, err = s.generations().InsertOne(ctx, GenerationDoc{ID: generationID(next), Generation: next, State: StateBuilding, Created: now, Updated: now})
		if mongo.IsDuplicateKeyError(err) {
			continue
		}
		if err != nil {
			return 0, s.storeErr(err)
		}
		return next, nil
	}
	return 0, errors.New("could not take a generation number: other rebuilds took five in a row")
}

// SetGenerationState records a generation's state and the events its
// rebuild applied (its Updated time is the rebuild's heartbeat).
func (s *Store) SetGenerationState(ctx context.Context, gen int, state string, applied int64) error {
	now := time.Now().UTC().Truncate(time.Millisecond)
	_, err := s.generations().UpdateOne(ctx, bson.D{{Key: "_id", Value: generationID(gen)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "generation", Value: gen}, {Key: "state", Value: state}, {Key: "applied", Value: applied}, {Key: "updated", Value: now}}},
			{Key: "$setOnInsert", Value: bson.D{{Key: "created", Value: now}}}},
		options.UpdateOne().SetUpsert(true))
	return s.storeErr(err)
}

// GenerationInfo is one generation's record, and whether it is known.
func (s *Store) GenerationInfo(ctx context.Context, gen int) (GenerationDoc, bool, error) {
	gens, err := s.Generations(ctx)
	if err != nil {
		return GenerationDoc{}, false, err
	}
	for _, g := range gens {
		if g.Generation == gen {
			return g, true, nil
		}
	}
	return GenerationDoc{}, false, nil
}

// RebuildHeartbeat is how recent a building generation's record must be for
// DropGeneration to take it for a rebuild still running (a rebuild records
// its progress every few seconds).
const RebuildHeartbeat = 30 * time.Second

// DropGeneration drops generation gen's collections and records it
// dropped. It refuses (CodeInvalidInput) the active generation, an unknown
// one, and one whose rebuild is running (recorded in the last
// RebuildHeartbeat).
func (s *Store) DropGeneration(ctx context.Context, gen int) error {
	g, ok, err := s.GenerationInfo(ctx, gen)
	if err != nil {
		return err
	}
	switch {
	case !ok:
		return &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("there is no generation %d of the views", gen)}
	case g.Active:
		return &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("generation %d is the active one: switch to another first", gen)}
	case g.State == StateBuilding && time.Since(g.Updated) < RebuildHeartbeat:
		return &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("generation %d is being rebuilt (its progress was recorded %s ago)", gen, time.Since(g.Updated).Round(time.Second))}
	}
	if err := s.At(gen).Drop(ctx); err != nil {
		return err
	}
	return s.SetGenerationState(ctx, gen, StateDropped, g.Applied)
}

// Follow reads the active generation every FollowInterval until ctx ends,
// and on a change switches this Store to it (Use) and calls changed with
// the old and new generation. A failed read is retried at the next tick.
func (s *Store) Follow(ctx context.Context, changed func(from, to int)) {
	t := time.NewTicker(FollowInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		gen, err := s.ActiveGeneration(rctx)
		cancel()
		if err != nil {
			continue
		}
		if from := s.Generation(); gen != from {
			s.Use(gen)
			changed(from, gen)
		}
	}
}

// ParseGeneration reads a generation number given by a user (a flag, a
// request parameter).
func ParseGeneration(v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 || n > MaxGeneration {
		return 0, fmt.Errorf("generation must be a whole number from 1 to %d", MaxGeneration)
	}
	return n, nil
}
