package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ordergateway/gateway/tracing"
)

// startTracing picks the tracer: Main.TracerProvider's, else the one the
// OTEL_* environment variables choose (off unless OTEL_TRACES_EXPORTER
// names an exporter).
func (m *Main) startTracing(ctx context.Context) error {
	if m.TracerProvider != nil {
		m.tracer = tracing.New(m.TracerProvider)
		m.Logger = slog.New(tracing.LogHandler(m.Logger.Handler()))
		return nil
	}
	tp, err := tracing.FromEnv(ctx)
	if err != nil {
		return fmt.Errorf("OTEL_TRACES_EXPORTER: %v", err)
	}
	if tp != nil {
		m.ownTracerProvider = tp
		m.tracer = tracing.New(tp)
		// Lines logged with a request's context carry its trace_id and
		// span_id.
		m.Logger = slog.New(tracing.LogHandler(m.Logger.Handler()))
		m.Logger.Info("tracing on", "exporter", os.Getenv("OTEL_TRACES_EXPORTER"))
	}
	return nil
}

// stopTracing flushes the spans of a tracer provider Main started.
func (m *Main) stopTracing() error {
	if m.ownTracerProvider == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.ownTracerProvider.Shutdown(ctx)
}
