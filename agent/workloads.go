package agent

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/agent/workloads"
	"github.com/peerd/peerd/dataplane"
	"github.com/peerd/peerd/internal/netutil"
)

// workloadDataplane is the dataplane as the workload manager sees it.
type workloadDataplane struct{ dp *dataplane.Dataplane }

func (w workloadDataplane) SetWorkloadNetns(cookie uint64) error {
	return w.dp.SetWorkloadNetns(cookie)
}

func (w workloadDataplane) DeleteWorkloadNetns(cookie uint64) error {
	return w.dp.DeleteWorkloadNetns(cookie)
}

func (w workloadDataplane) ReadNetnsEvent(ctx context.Context) (workloads.NetnsEvent, error) {
	ev, err := w.dp.ReadNetnsEvent(ctx)
	return workloads.NetnsEvent{NetnsCookie: ev.NetnsCookie, PID: ev.PID, CgroupID: ev.CgroupID}, err
}

// startWorkloads starts the workload namespace manager (-workload-netns)
// once the dataplane, the terminator and DNS run: peerd's listeners inside
// every workload network namespace under -cgroup-path. Off without
// capture.
func (a *Agent) startWorkloads(reg prometheus.Registerer) error {
	cfg := &a.cfg
	if !cfg.WorkloadNetns || a.dataplane == nil || len(a.transparentLns) == 0 {
		return nil
	}
	if st := a.dataplane.Status().Capture; !st.Loaded {
		a.log.Warn("workload namespaces are not served: the capture layer is not loaded", "reason", st.Reason)
		return nil
	}
	var addrs []string
	for _, ln := range a.transparentLns {
		addrs = append(addrs, ln.Addr().String())
	}
	wc := workloads.Config{CgroupPath: cfg.CgroupPath, TransparentAddrs: addrs, DNSAddrs: cfg.WorkloadDNSList(),
		Dataplane: workloadDataplane{a.dataplane}, Proxy: a.proxy, CgroupID: dataplane.CgroupID,
		Control: netutil.NewMarker(cfg.ProxyMark, func(err error) {
			a.log.Warn("cannot set SO_MARK on the workload namespace listeners (needs CAP_NET_ADMIN); running unmarked", "err", err)
		}).Control,
		Registerer: reg, Logger: a.log}
	if a.dns != nil {
		wc.DNS = a.dns
	} else if len(wc.DNSAddrs) > 0 {
		a.log.Info("no DNS inside workload namespaces: the agent's DNS is off (-dns-addr)")
	}
	m, err := workloads.New(wc)
	if err != nil {
		return fmt.Errorf("workload namespaces: %w", err)
	}
	ctx, cancel := context.WithCancel(a.runCtx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.Run(ctx); err != nil {
			a.log.Error("workload namespaces are not served", "err", err)
		}
	}()
	a.workloads, a.stopWorkloads, a.workloadsDone = m, cancel, done
	return nil
}

// closeWorkloads stops the manager: every workload namespace's listeners
// close and the namespaces are unmarked in the dataplane.
func (a *Agent) closeWorkloads(ctx context.Context) error {
	if a.stopWorkloads == nil {
		return nil
	}
	a.stopWorkloads()
	select {
	case <-a.workloadsDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop the workload namespaces: %w", ctx.Err())
	}
}
