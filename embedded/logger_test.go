package embedded

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// countingHandler counts WithAttrs calls on the handler it wraps.
type countingHandler struct {
	slog.Handler
	withAttrs *int
}

func (h countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	*h.withAttrs++
	return countingHandler{h.Handler.WithAttrs(attrs), h.withAttrs}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(name), h.withAttrs}
}

func TestLazyAttrsFormatsOnlyWhatIsLogged(t *testing.T) {
	var buf bytes.Buffer
	calls := 0
	text := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	log := slog.New(&lazyAttrs{next: countingHandler{text, &calls}})

	log.With("args", strings.Repeat("x", 1000)).Debug("not logged")
	if calls != 0 || buf.Len() != 0 {
		t.Fatalf("a debug record below the level formatted its attributes (%d WithAttrs calls) or wrote %q", calls, buf.String())
	}

	log.With("component", "ferretdb").WithGroup("g").With("k", 1).Warn("logged", "v", 2)
	got := buf.String()
	for _, want := range []string{"level=WARN", "msg=logged", "component=ferretdb", "g.k=1", "g.v=2"} {
		if !strings.Contains(got, want) {
			t.Errorf("record %q lacks %q", got, want)
		}
	}
}
