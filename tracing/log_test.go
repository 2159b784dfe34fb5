package tracing

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestLogHandlerAddsTheSpan(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(LogHandler(slog.NewTextHandler(&buf, nil))).With("component", "x")
	tp := sdktrace.NewTracerProvider()
	ctx, span := New(tp).Start(context.Background(), "op")
	defer span.End()
	logger.InfoContext(ctx, "with a span")
	logger.Info("without")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	sc := span.SpanContext()
	if !strings.Contains(lines[0], "trace_id="+sc.TraceID().String()) || !strings.Contains(lines[0], "span_id="+sc.SpanID().String()) ||
		!strings.Contains(lines[0], "component=x") {
		t.Errorf("with a span: %s", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("without a span: %s", lines[1])
	}
}

func TestOffIsNil(t *testing.T) {
	var tr *Tracer = New(nil)
	if tr != nil {
		t.Fatal("New(nil) is not off")
	}
	ctx := context.Background()
	if c, span := tr.Start(ctx, "x"); c != ctx || span.IsRecording() {
		t.Error("an off tracer started a span")
	}
	if span := tr.StartProducer(ctx, nil, "topic", "id"); span.IsRecording() {
		t.Error("an off tracer started a producer span")
	}
	if tr.Extract(ctx, nil) != ctx {
		t.Error("an off tracer extracted")
	}
}
