//go:build !linux

package workloads

import (
	"context"
	"errors"
)

type watcher struct{}

func newWatcher(string, func()) (*watcher, error) {
	return nil, errors.New("inotify is Linux's")
}

func (*watcher) run(context.Context) {}
