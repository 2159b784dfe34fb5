package app

import (
	"fmt"
	"strconv"

	"github.com/ordergateway/gateway/graph"
)

// setAPQCacheSize is APQ_CACHE_SIZE: how many automatic persisted queries
// the gateway keeps (0 turns APQ off: Config.APQCacheSize -1).
func setAPQCacheSize(c *Config, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1_000_000 {
		return fmt.Errorf("%q is not a whole number from 0 to 1000000", v)
	}
	c.APQCacheSize = n
	if n == 0 {
		c.APQCacheSize = -1
	}
	return nil
}

// setTrustedDocumentsFile is TRUSTED_DOCUMENTS_FILE: the manifest is read
// and checked here, so a bad one ends the start in one line, before
// anything starts.
func setTrustedDocumentsFile(c *Config, v string) error {
	c.TrustedDocumentsFile, c.TrustedDocuments = v, nil
	if v == "" {
		return nil
	}
	t, err := graph.LoadTrustedDocuments(v)
	if err != nil {
		return fmt.Errorf("%s: %w", v, err)
	}
	c.TrustedDocuments = t
	return nil
}

// configurePersisted applies APQ_CACHE_SIZE and TRUSTED_DOCUMENTS_FILE to
// the GraphQL server.
func (m *Main) configurePersisted(s *graph.Server) {
	size := m.Config.APQCacheSize
	switch {
	case size == 0:
		size = graph.DefaultAPQCacheSize
	case size < 0:
		size = 0
	}
	t := m.Config.TrustedDocuments
	if t == nil && m.Config.TrustedDocumentsFile != "" { // a Config not made by ParseConfig
		var err error
		if t, err = graph.LoadTrustedDocuments(m.Config.TrustedDocumentsFile); err != nil {
			panic(fmt.Sprintf("trusted documents %s: %v", m.Config.TrustedDocumentsFile, err))
		}
	}
	s.PersistedQueries().Configure(size, t)
	if t != nil {
		m.Logger.Info("trusted documents only", "file", m.Config.TrustedDocumentsFile, "documents", t.Len())
	}
}
