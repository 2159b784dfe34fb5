package embedded

import (
	"context"
	"log/slog"
)

// lazyAttrs is a slog.Handler that defers the attributes and groups added
// with With and WithGroup until a record is handled. FerretDB's SQL layer
// calls Logger.With twice per statement, with the statement's arguments (the
// whole document), to log them at debug level; text and JSON handlers format
// such attributes as soon as With is called, whatever the level, which cost
// about 3% of the process CPU under mutation load.
type lazyAttrs struct {
	next slog.Handler
	ops  []lazyOp // in the order they were added
}

// lazyOp is one With (attrs) or WithGroup (group) call.
type lazyOp struct {
	attrs []slog.Attr
	group string
}

func (h *lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	next := h.next
	for _, op := range h.ops {
		if op.attrs != nil {
			next = next.WithAttrs(op.attrs)
		} else {
			next = next.WithGroup(op.group)
		}
	}
	return next.Handle(ctx, r)
}

func (h *lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(lazyOp{attrs: attrs})
}

func (h *lazyAttrs) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(lazyOp{group: name})
}

func (h *lazyAttrs) with(op lazyOp) *lazyAttrs {
	ops := make([]lazyOp, len(h.ops), len(h.ops)+1)
	copy(ops, h.ops)
	return &lazyAttrs{next: h.next, ops: append(ops, op)}
}
