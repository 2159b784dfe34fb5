package graph

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
)

// CodeQueryTooComplex is the extensions.code of a document over the
// Limits.
const CodeQueryTooComplex = "QUERY_TOO_COMPLEX"

// CodeOperationResolution is the extensions.code of a request whose
// document has no operation of the name it gives, or several operations
// and no name (Apollo Server's code for it). Like a validation error, it
// answers a websocket operation with an error message.
const CodeOperationResolution = "OPERATION_RESOLUTION_FAILURE"

func init() { errcode.RegisterErrorType(CodeOperationResolution, errcode.KindProtocol) }

// maxQuotedName bounds how much of an operationName an error quotes.
const maxQuotedName = 100

// Limits bound what one GraphQL document may ask. They are checked before
// gqlgen parses and validates the document, in one pass that counts each
// fragment once however often it is spread, so neither gqlgen's
// validation (whose overlapping-fields rule is quadratic in the fields of a
// selection) nor its complexity walk (which walks a fragment again at every
// spread) runs on a document over them, and none is cached.
type Limits struct {
	Tokens int // lexical tokens in the document
	Depth  int // nesting of selections
	// IntrospectionDepth is the nesting allowed under __schema and __type:
	// the introspection query of graphql-js, which GraphiQL, codegen and
	// Apollo's tools send, nests __Type.ofType 7 to 9 times, 13 to 15
	// deep in all.
	IntrospectionDepth int
	Fields             int // fields in all, fragments expanded
	Width              int // fields directly in one selection set, fragments expanded
	RootFields         int // fields of the operation's root, aliases included
	// Cost weighs each field 1, and the fields under orders(first: n) n
	// times (20 when first is not given; a variable counts with its value).
	Cost int
}

// DefaultLimits are generous for any page a frontend builds: the largest
// query of the schema's own examples costs about 50.
var DefaultLimits = Limits{Tokens: 15_000, Depth: 12, IntrospectionDepth: 24, Fields: 2_000, Width: 200, RootFields: 20, Cost: 10_000}

// maxFirst is the most orders a page holds (view.Store caps first at it).
const maxFirst = 100

// limitChecker is the gqlgen extension that enforces Limits. It keeps the
// documents it has parsed and found within the static limits (up to
// cacheSize), so a repeated query is parsed once; the cost, which depends
// on the variables, is computed for each request.
type limitChecker struct {
	limits Limits
	mu     sync.Mutex
	docs   *simplelru.LRU[string, *ast.QueryDocument]
}

func newLimitChecker(l Limits, cacheSize int) *limitChecker {
	docs, _ := simplelru.NewLRU[string, *ast.QueryDocument](cacheSize, nil)
	return &limitChecker{limits: l, docs: docs}
}

var (
	_ graphql.HandlerExtension          = (*limitChecker)(nil)
	_ graphql.OperationParameterMutator = (*limitChecker)(nil)
)

func (c *limitChecker) ExtensionName() string { return "QueryLimits" }

func (c *limitChecker) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationParameters checks the request's document before anything
// else is done with it.
func (c *limitChecker) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	c.mu.Lock()
	doc, ok := c.docs.Get(p.Query)
	c.mu.Unlock()
	if !ok {
		var err error
		doc, err = parser.ParseQueryWithTokenLimit(&ast.Source{Input: p.Query}, c.limits.Tokens)
		if err != nil {
			// gqlgen reports parse errors, with their positions; a document
			// over the token limit is one.
			if e, ok := err.(*gqlerror.Error); ok && e.Message == fmt.Sprintf("exceeded token limit of %d", c.limits.Tokens) {
				return tooComplex("the document has more than %d tokens", c.limits.Tokens)
			}
			return nil
		}
		if e := c.checkStatic(doc); e != nil {
			return e
		}
		c.mu.Lock()
		c.docs.Add(p.Query, doc)
		c.mu.Unlock()
	}
	return c.checkCost(doc, p.OperationName, p.Variables)
}

// resolutionError says why the document has no operation to run
// (gqlgen's "operation  not found" did not, and quoted any name whole).
func resolutionError(doc *ast.QueryDocument, name string) *gqlerror.Error {
	var msg string
	switch {
	case len(doc.Operations) == 0:
		return nil // gqlgen: "no operation provided"
	case name == "":
		msg = "the document has several operations; name one in operationName"
	default:
		msg = fmt.Sprintf("the document has no operation named %q", truncate(name, maxQuotedName))
	}
	return &gqlerror.Error{Message: msg, Extensions: map[string]any{"code": CodeOperationResolution}}
}

func tooComplex(format string, args ...any) *gqlerror.Error {
	return &gqlerror.Error{Message: "query too complex: " + fmt.Sprintf(format, args...),
		Extensions: map[string]any{"code": CodeQueryTooComplex}}
}

// measure is what a selection set asks, fragments expanded.
type measure struct {
	fields int // fields in all
	depth  int // deepest nesting below and including this set
	intro  int // the same, of the __schema and __type fields in it
	width  int // widest selection set at or below this one
	direct int // fields directly in this set (spreads and inline fragments expanded)
}

// walker measures selection sets, each fragment once.
type walker struct {
	doc       *ast.QueryDocument
	fragments map[string]*measure // measured fragments; nil entry: being measured
}

func (w *walker) set(ss ast.SelectionSet) measure {
	var m measure
	for _, sel := range ss {
		switch s := sel.(type) {
		case *ast.Field:
			child := w.set(s.SelectionSet)
			m.fields = satAdd(m.fields, satAdd(1, child.fields))
			if s.Name == "__schema" || s.Name == "__type" {
				m.intro = max(m.intro, child.depth+1, child.intro+1)
			} else {
				m.depth = max(m.depth, child.depth+1)
				m.intro = max(m.intro, child.intro)
			}
			m.width = max(m.width, child.width)
			m.direct = satAdd(m.direct, 1)
		case *ast.InlineFragment:
			child := w.set(s.SelectionSet)
			m.add(child)
		case *ast.FragmentSpread:
			m.add(w.fragment(s.Name))
		}
	}
	m.width = max(m.width, m.direct)
	return m
}

// add merges the measure of a fragment spread into its parent's set.
func (m *measure) add(f measure) {
	m.fields = satAdd(m.fields, f.fields)
	m.depth = max(m.depth, f.depth)
	m.intro = max(m.intro, f.intro)
	m.width = max(m.width, f.width)
	m.direct = satAdd(m.direct, f.direct)
}

func (w *walker) fragment(name string) measure {
	if m, seen := w.fragments[name]; seen {
		if m == nil {
			return measure{} // a cycle: validation refuses the document
		}
		return *m
	}
	def := w.doc.Fragments.ForName(name)
	if def == nil {
		return measure{} // unknown: validation refuses the document
	}
	w.fragments[name] = nil
	m := w.set(def.SelectionSet)
	w.fragments[name] = &m
	return m
}

// satAdd adds without overflowing: a document of repeated spreads counts
// 2^n fields.
func satAdd(a, b int) int {
	if s := a + b; s >= a && s >= b {
		return s
	}
	return int(^uint(0) >> 1)
}

func satMul(a, b int) int {
	if a == 0 || b == 0 {
		return 0
	}
	if p := a * b; p/b == a {
		return p
	}
	return int(^uint(0) >> 1)
}

// checkStatic checks what does not depend on the variables, for every
// operation of the document.
func (c *limitChecker) checkStatic(doc *ast.QueryDocument) *gqlerror.Error {
	w := &walker{doc: doc, fragments: map[string]*measure{}}
	l := c.limits
	for _, op := range doc.Operations {
		m := w.set(op.SelectionSet)
		switch {
		case m.depth > l.Depth:
			return tooComplex("selections are nested %d deep, more than %d", m.depth, l.Depth)
		case m.intro > l.IntrospectionDepth:
			return tooComplex("introspection selections are nested %d deep, more than %d", m.intro, l.IntrospectionDepth)
		case m.fields > l.Fields:
			return tooComplex("it asks for more than %d fields (fragments expanded)", l.Fields)
		case m.width > l.Width:
			return tooComplex("a selection holds more than %d fields (fragments expanded)", l.Width)
		case m.direct > l.RootFields:
			return tooComplex("the operation has more than %d root fields", l.RootFields)
		}
	}
	return nil
}

// checkCost checks the cost of the operation the request names.
func (c *limitChecker) checkCost(doc *ast.QueryDocument, name string, vars map[string]any) *gqlerror.Error {
	var op *ast.OperationDefinition
	if name == "" && len(doc.Operations) == 1 {
		op = doc.Operations[0]
	} else {
		op = doc.Operations.ForName(name)
	}
	if op == nil {
		return resolutionError(doc, name)
	}
	cc := &coster{doc: doc, vars: vars, fragments: map[string]int{}}
	if cost := cc.set(op.SelectionSet); cost > c.limits.Cost {
		return tooComplex("its cost is more than %d (a field costs 1; the fields under orders(first: n) n times)", c.limits.Cost)
	}
	return nil
}

// coster computes a selection set's cost, each fragment once.
type coster struct {
	doc       *ast.QueryDocument
	vars      map[string]any
	fragments map[string]int // -1: being computed
}

func (c *coster) set(ss ast.SelectionSet) int {
	cost := 0
	for _, sel := range ss {
		switch s := sel.(type) {
		case *ast.Field:
			cost = satAdd(cost, satAdd(1, satMul(c.multiplier(s), c.set(s.SelectionSet))))
		case *ast.InlineFragment:
			cost = satAdd(cost, c.set(s.SelectionSet))
		case *ast.FragmentSpread:
			cost = satAdd(cost, c.fragment(s.Name))
		}
	}
	return cost
}

func (c *coster) fragment(name string) int {
	if v, ok := c.fragments[name]; ok {
		return max(v, 0)
	}
	def := c.doc.Fragments.ForName(name)
	if def == nil {
		return 0
	}
	c.fragments[name] = -1
	v := c.set(def.SelectionSet)
	c.fragments[name] = v
	return v
}

// multiplier is how many times a field's children are asked for: the page
// size of orders, 1 for anything else.
func (c *coster) multiplier(f *ast.Field) int {
	if f.Name != "orders" {
		return 1
	}
	n := 20
	if a := f.Arguments.ForName("first"); a != nil && a.Value != nil {
		switch a.Value.Kind {
		case ast.IntValue:
			if v, err := strconv.Atoi(a.Value.Raw); err == nil {
				n = v
			}
		case ast.Variable:
			switch v := c.vars[a.Value.Raw].(type) {
			case float64:
				n = int(v)
			case int:
				n = v
			case int64:
				n = int(v)
			case interface{ Int64() (int64, error) }: // json.Number
				if i, err := v.Int64(); err == nil {
					n = int(i)
				}
			}
		}
	}
	return min(max(n, 1), maxFirst)
}
