package configentry

import "math"

// ServiceSplitterConfigEntry splits a service's traffic between services or
// subsets by weight.
type ServiceSplitterConfigEntry struct {
	Kind      string
	Name      string
	Partition string `json:",omitempty"`
	Namespace string `json:",omitempty"`

	// Splits must have weights summing to 100.
	Splits []ServiceSplit `json:",omitempty"`

	Meta map[string]string `json:",omitempty"`
	RaftIndex
}

// ServiceSplit sends Weight percent of the traffic to one destination.
type ServiceSplit struct {
	// Weight is a percentage from 0 to 100 with at most two decimals;
	// Normalize rounds it to two decimals.
	Weight float32
	// Service defaults to the splitter's own service.
	Service         string               `json:",omitempty"`
	ServiceSubset   string               `json:",omitempty"`
	Namespace       string               `json:",omitempty"`
	Partition       string               `json:",omitempty"`
	RequestHeaders  *HTTPHeaderModifiers `json:",omitempty"`
	ResponseHeaders *HTTPHeaderModifiers `json:",omitempty"`
}

func (e *ServiceSplitterConfigEntry) GetKind() string            { return ServiceSplitter }
func (e *ServiceSplitterConfigEntry) GetName() string            { return e.Name }
func (e *ServiceSplitterConfigEntry) GetPartition() string       { return e.Partition }
func (e *ServiceSplitterConfigEntry) GetNamespace() string       { return e.Namespace }
func (e *ServiceSplitterConfigEntry) GetMeta() map[string]string { return e.Meta }
func (e *ServiceSplitterConfigEntry) GetRaftIndex() *RaftIndex   { return &e.RaftIndex }

// Normalize sets Kind and rounds weights to two decimals (0.01%), as Consul
// does.
func (e *ServiceSplitterConfigEntry) Normalize() {
	e.Kind = ServiceSplitter
	for i := range e.Splits {
		e.Splits[i].Weight = normalizeSplitWeight(e.Splits[i].Weight)
	}
}

// scaleWeight turns a percentage into hundredths of a percent.
func scaleWeight(w float32) int64 {
	f := math.Round(float64(w) * 100)
	if math.IsNaN(f) || f > math.MaxInt32 || f < math.MinInt32 {
		return math.MinInt64 // out of range; Validate reports it
	}
	return int64(f)
}

func normalizeSplitWeight(w float32) float32 {
	s := scaleWeight(w)
	if s == math.MinInt64 {
		return w
	}
	return float32(s) / 100
}

// Validate applies Consul's rules for service-splitter.
func (e *ServiceSplitterConfigEntry) Validate() error {
	if e.Name == "" {
		return errf("Name", "name is required")
	}
	if err := validateServiceName("Name", e.Name, false); err != nil {
		return err
	}
	if err := validateEntryTenancy(e.Partition, e.Namespace, false); err != nil {
		return err
	}
	if len(e.Splits) == 0 {
		return errf("Splits", "no splits configured; add at least one split")
	}
	if err := validateMeta("Meta", e.Meta); err != nil {
		return err
	}
	type splitKey struct{ service, subset, ns, partition string }
	seen := make(map[splitKey]int, len(e.Splits))
	var sum int64
	for i, s := range e.Splits {
		path := index("Splits", i)
		if math.IsNaN(float64(s.Weight)) || s.Weight < 0 || s.Weight > 100 {
			return errf(field(path, "Weight"), "weight must be between 0 and 100, got %v", s.Weight)
		}
		if err := validateTarget(path, s.Service, s.ServiceSubset, s.Namespace, s.Partition, "", "", ""); err != nil {
			return err
		}
		if err := s.RequestHeaders.validate(field(path, "RequestHeaders")); err != nil {
			return err
		}
		if err := s.ResponseHeaders.validate(field(path, "ResponseHeaders")); err != nil {
			return err
		}
		k := splitKey{s.Service, s.ServiceSubset, s.Namespace, s.Partition}
		if k.service == "" {
			k.service = e.Name
		}
		if j, dup := seen[k]; dup {
			return errf(path, "split destination occurs more than once (also Splits[%d]): service=%q, subset=%q, namespace=%q, partition=%q; merge their weights",
				j, short(k.service), short(k.subset), short(k.ns), short(k.partition))
		}
		seen[k] = i
		sum += scaleWeight(s.Weight)
	}
	if sum != 100*100 {
		return errf("Splits", "the sum of all split weights must be 100, not %.2f", float64(sum)/100)
	}
	return nil
}
