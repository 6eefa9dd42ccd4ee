package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hclogFor adapts raft's hclog output to slog: hclog writes JSON lines to a
// writer that re-emits each as a slog record at the same level.
func hclogFor(l *slog.Logger, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Debug,
		JSONFormat: true,
		Output:     &slogJSONWriter{l: l},
	})
}

type slogJSONWriter struct{ l *slog.Logger }

func (w *slogJSONWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			w.l.Info(string(line))
			continue
		}
		level := slogLevel(asString(m["@level"]))
		if !w.l.Enabled(context.Background(), level) {
			continue
		}
		msg := asString(m["@message"])
		attrs := []any{}
		if mod := asString(m["@module"]); mod != "" {
			attrs = append(attrs, "module", mod)
		}
		for k, v := range m {
			if !strings.HasPrefix(k, "@") {
				attrs = append(attrs, k, v)
			}
		}
		w.l.Log(context.Background(), level, msg, attrs...)
	}
	return len(p), nil
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

func slogLevel(s string) slog.Level {
	switch strings.ToLower(strings.Trim(s, "[] ")) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error", "err":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// stdlogFor adapts memberlist's *log.Logger lines ("[WARN] memberlist: ...")
// to slog records.
func stdlogFor(l *slog.Logger) *log.Logger {
	return log.New(&slogLineWriter{l: l}, "", 0)
}

type slogLineWriter struct{ l *slog.Logger }

func (w *slogLineWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	if strings.HasPrefix(line, "[") {
		if end := strings.Index(line, "]"); end > 0 {
			level = slogLevel(line[1:end])
			line = strings.TrimSpace(line[end+1:])
		}
	}
	w.l.Log(context.Background(), level, line, "module", "memberlist")
	return len(p), nil
}

var _ io.Writer = (*slogLineWriter)(nil)
