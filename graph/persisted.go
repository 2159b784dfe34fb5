package graph

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// The extensions.code of persisted-query refusals (README, Persisted
// queries and trusted documents).
const (
	// An automatic persisted query (APQ) whose hash the gateway does not
	// hold: Apollo Client sends the query again with its hash. Answered 200
	// with Cache-Control: private, no-cache, must-revalidate, as Apollo
	// Server does, so no cache keeps it. A documentId the trusted documents
	// do not hold gets it too, answered 404.
	CodePersistedQueryNotFound = "PERSISTED_QUERY_NOT_FOUND"
	// APQ is off (APQ_CACHE_SIZE=0): Apollo Client stops sending hashes.
	CodePersistedQueryNotSupported = "PERSISTED_QUERY_NOT_SUPPORTED"
	// The query sent with a hash is not the document of that hash.
	CodePersistedQueryHashMismatch = "PERSISTED_QUERY_HASH_MISMATCH"
	// Trusted documents are on and the document is not among them
	// (Apollo Router's code for it); answered 403.
	CodePersistedQueryNotInList = "PERSISTED_QUERY_NOT_IN_LIST"
)

func init() {
	for _, c := range []string{CodePersistedQueryNotFound, CodePersistedQueryNotSupported, CodePersistedQueryHashMismatch, CodePersistedQueryNotInList} {
		errcode.RegisterErrorType(c, errcode.KindProtocol)
	}
}

// DefaultAPQCacheSize is how many automatic persisted queries a gateway
// keeps (APQ_CACHE_SIZE), the least recently used dropped first.
const DefaultAPQCacheSize = 1000

// APQCacheBytes bounds the documents the APQ cache holds, all together: the
// least recently used are dropped to stay within it.
const APQCacheBytes = 16 << 20

// PersistedQueries serves Apollo's automatic persisted queries
// (extensions.persistedQuery: {version: 1, sha256Hash}) from a bounded LRU
// cache, and trusted documents (only the documents of a manifest run; by
// documentId, by hash, or by their text). It is the first extension of
// every transport's requests, so the limits and the parse cache see the
// document it puts in the request.
type PersistedQueries struct {
	mu      sync.Mutex
	size    int // entries; 0: APQ off
	bytes   int // sum of the cached documents' lengths
	cache   *simplelru.LRU[string, string]
	trusted *TrustedDocuments // nil: any document runs
}

func newPersistedQueries() *PersistedQueries {
	p := &PersistedQueries{}
	p.Configure(DefaultAPQCacheSize, nil)
	return p
}

// Configure sets the APQ cache's size (0 turns APQ off) and the trusted
// documents (nil: any document runs). It is for before the server serves.
func (p *PersistedQueries) Configure(cacheSize int, trusted *TrustedDocuments) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.size, p.bytes, p.cache, p.trusted = cacheSize, 0, nil, trusted
	if cacheSize > 0 {
		p.cache, _ = simplelru.NewLRU[string, string](cacheSize, func(_ string, doc string) { p.bytes -= len(doc) })
	}
}

var (
	_ graphql.HandlerExtension          = (*PersistedQueries)(nil)
	_ graphql.OperationParameterMutator = (*PersistedQueries)(nil)
)

func (*PersistedQueries) ExtensionName() string                   { return "PersistedQueries" }
func (*PersistedQueries) Validate(graphql.ExecutableSchema) error { return nil }

// documentIDKey is where the transports put a request's top-level
// documentId (GraphQL over HTTP, persisted documents) in its extensions;
// a client may also send it there.
const documentIDKey = "documentId"

// hasPersisted reports whether a request without a query names its
// document another way.
func hasPersisted(ext map[string]any) bool {
	return ext["persistedQuery"] != nil || ext[documentIDKey] != nil
}

func (p *PersistedQueries) MutateOperationParameters(ctx context.Context, params *graphql.RawParams) *gqlerror.Error {
	p.mu.Lock()
	trusted, apqOn := p.trusted, p.size > 0
	p.mu.Unlock()

	if id, ok := params.Extensions[documentIDKey]; ok {
		s, _ := id.(string)
		switch {
		case s == "":
			return persistedError(CodeBadRequest, "documentId must be a non-empty string")
		case params.Query != "":
			return persistedError(CodeBadRequest, "send documentId or query, not both")
		case trusted == nil:
			return persistedError(CodePersistedQueryNotFound, "documentId is not served: this gateway has no trusted documents (TRUSTED_DOCUMENTS_FILE)")
		}
		doc, ok := trusted.byID(s)
		if !ok {
			return persistedError(CodePersistedQueryNotFound, fmt.Sprintf("no trusted document has the id %q", truncate(s, maxQuotedName)))
		}
		params.Query = doc
		return nil
	}

	if raw, ok := params.Extensions["persistedQuery"]; ok {
		pq, _ := raw.(map[string]any)
		hash, _ := pq["sha256Hash"].(string)
		if pq == nil || !isSHA256(hash) {
			return persistedError(CodeBadRequest, "extensions.persistedQuery must be {version: 1, sha256Hash: 64 hex digits}")
		}
		if v, ok := pq["version"].(json.Number); !ok || v.String() != "1" {
			if f, ok := pq["version"].(float64); !ok || f != 1 {
				return persistedError(CodeBadRequest, "extensions.persistedQuery.version must be 1")
			}
		}
		hash = strings.ToLower(hash)
		if params.Query != "" {
			if sum := sha256Hex(params.Query); sum != hash {
				return persistedError(CodePersistedQueryHashMismatch, "the query's SHA-256 is not extensions.persistedQuery.sha256Hash")
			}
			if trusted != nil && !trusted.has(hash) {
				return notInList()
			}
			p.add(hash, params.Query)
			return nil
		}
		if trusted != nil {
			if doc, ok := trusted.byHash(hash); ok {
				params.Query = doc
				return nil
			}
		}
		if !apqOn {
			return persistedError(CodePersistedQueryNotSupported, "PersistedQueryNotSupported")
		}
		doc, ok := p.get(hash)
		if !ok {
			// Apollo Client recognises the message as well as the code.
			return persistedError(CodePersistedQueryNotFound, "PersistedQueryNotFound")
		}
		params.Query = doc
		return nil
	}

	if trusted != nil && params.Query != "" && !trusted.has(sha256Hex(params.Query)) {
		return notInList()
	}
	return nil
}

func notInList() *gqlerror.Error {
	return persistedError(CodePersistedQueryNotInList, "only trusted documents run here, and this document is not one of them")
}

func (p *PersistedQueries) add(hash, doc string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cache == nil || len(doc) > APQCacheBytes {
		return
	}
	if p.cache.Contains(hash) {
		p.cache.Get(hash) // most recently used
		return
	}
	p.cache.Add(hash, doc)
	p.bytes += len(doc)
	for p.bytes > APQCacheBytes {
		p.cache.RemoveOldest()
	}
}

func (p *PersistedQueries) get(hash string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cache == nil {
		return "", false
	}
	return p.cache.Get(hash)
}

// Len is the number of documents in the APQ cache.
func (p *PersistedQueries) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cache == nil {
		return 0
	}
	return p.cache.Len()
}

func persistedError(code, message string) *gqlerror.Error {
	return &gqlerror.Error{Message: message, Extensions: map[string]any{"code": code}}
}

// persistedStatus is the HTTP status of a refusal of this package's
// persisted-query codes (ok false for other errors), and whether the answer
// must not be cached.
func persistedStatus(errs gqlerror.List) (status int, noCache, ok bool) {
	if len(errs) != 1 {
		return 0, false, false
	}
	switch code, _ := errs[0].Extensions["code"].(string); code {
	case CodePersistedQueryNotFound:
		if strings.HasPrefix(errs[0].Message, "PersistedQueryNotFound") {
			return 200, true, true // APQ: as Apollo Server answers it
		}
		return 404, true, true
	case CodePersistedQueryNotSupported:
		return 200, true, true
	case CodePersistedQueryNotInList:
		return 403, false, true
	case CodeBadRequest:
		return 400, false, true
	}
	return 0, false, false
}

func sha256Hex(s string) string {
	b := sha256.Sum256([]byte(s))
	return hex.EncodeToString(b[:])
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// TrustedDocuments are the documents a gateway with TRUSTED_DOCUMENTS_FILE
// runs, and no others.
type TrustedDocuments struct {
	ids    map[string]string // the manifest's ids (and sha256:<hash>) to documents
	hashes map[string]string // SHA-256 (hex) of each document to it
}

// Len is the number of documents.
func (t *TrustedDocuments) Len() int { return len(t.hashes) }

func (t *TrustedDocuments) has(hash string) bool { _, ok := t.hashes[hash]; return ok }

func (t *TrustedDocuments) byHash(hash string) (string, bool) {
	d, ok := t.hashes[hash]
	return d, ok
}

// byID takes a manifest id, sha256:<hex> (the GraphQL over HTTP appendix's
// prefixed form) or the bare SHA-256 of a document.
func (t *TrustedDocuments) byID(id string) (string, bool) {
	if d, ok := t.ids[id]; ok {
		return d, true
	}
	h := strings.ToLower(strings.TrimPrefix(id, "sha256:"))
	return t.byHash(h)
}

// LoadTrustedDocuments reads a manifest: Apollo's persisted query manifest
// ({"format": "apollo-persisted-query-manifest", "version": 1,
// "operations": [{"id", "name", "type", "body"}]}, as
// generate-persisted-query-manifest writes it) or a JSON object of id to
// document (GraphQL Code Generator's client preset, persisted-documents.json).
// An id of 64 hex digits must be its document's SHA-256.
func LoadTrustedDocuments(path string) (*TrustedDocuments, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseTrustedDocuments(b)
}

// ParseTrustedDocuments is LoadTrustedDocuments of a manifest's bytes.
func ParseTrustedDocuments(b []byte) (*TrustedDocuments, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, errors.New("not a JSON object: want Apollo's persisted query manifest or an object of id to document")
	}
	t := &TrustedDocuments{ids: map[string]string{}, hashes: map[string]string{}}
	add := func(id, doc string) error {
		if id == "" || doc == "" {
			return fmt.Errorf("an entry has an empty id or document")
		}
		sum := sha256Hex(doc)
		if isSHA256(id) && !strings.EqualFold(id, sum) {
			return fmt.Errorf("the id %s is not the SHA-256 of its document (%s)", id, sum)
		}
		t.ids[id], t.hashes[sum] = doc, doc
		return nil
	}
	if _, ok := probe["format"]; ok {
		var m struct {
			Format     string `json:"format"`
			Version    int    `json:"version"`
			Operations []struct {
				ID   string `json:"id"`
				Body string `json:"body"`
			} `json:"operations"`
		}
		if err := json.Unmarshal(b, &m); err != nil || m.Format != "apollo-persisted-query-manifest" || m.Version != 1 {
			return nil, errors.New(`a manifest with "format" must be {"format": "apollo-persisted-query-manifest", "version": 1, "operations": [...]}`)
		}
		for _, op := range m.Operations {
			if err := add(op.ID, op.Body); err != nil {
				return nil, err
			}
		}
	} else {
		for id, raw := range probe {
			var doc string
			if json.Unmarshal(raw, &doc) != nil {
				return nil, fmt.Errorf("the entry %q is not a string (want an object of id to document)", truncate(id, maxQuotedName))
			}
			if err := add(id, doc); err != nil {
				return nil, err
			}
		}
	}
	if len(t.hashes) == 0 {
		return nil, errors.New("it holds no document")
	}
	return t, nil
}
