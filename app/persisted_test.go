package app

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseConfigPersistedQueries(t *testing.T) {
	if c := mustParse(t, nil, nil); c.APQCacheSize != 1000 || c.TrustedDocuments != nil {
		t.Errorf("defaults: APQCacheSize %d, trusted %v", c.APQCacheSize, c.TrustedDocuments)
	}
	if c := mustParse(t, nil, map[string]string{"APQ_CACHE_SIZE": "0"}); c.APQCacheSize >= 0 {
		t.Errorf("APQ_CACHE_SIZE=0: %d, want APQ off (negative)", c.APQCacheSize)
	}
	mustFail(t, nil, map[string]string{"APQ_CACHE_SIZE": "-1"}, "APQ_CACHE_SIZE", "0 to 1000000")

	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	// The SHA-256 of "{ __typename }".
	os.WriteFile(good, []byte(`{"7f56e67dd21ab3f30d1ff8b7bed08893f0a0db86449836189b361dd1e56ddb4b": "{ __typename }"}`), 0o600)
	if c := mustParse(t, nil, map[string]string{"TRUSTED_DOCUMENTS_FILE": good}); c.TrustedDocuments == nil || c.TrustedDocuments.Len() != 1 {
		t.Errorf("a good manifest: %+v", c.TrustedDocuments)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"0000000000000000000000000000000000000000000000000000000000000000": "{ __typename }"}`), 0o600)
	mustFail(t, nil, map[string]string{"TRUSTED_DOCUMENTS_FILE": bad}, "TRUSTED_DOCUMENTS_FILE", "not the SHA-256 of its document")
	mustFail(t, nil, map[string]string{"TRUSTED_DOCUMENTS_FILE": filepath.Join(dir, "missing.json")}, "TRUSTED_DOCUMENTS_FILE", "missing.json")
}
