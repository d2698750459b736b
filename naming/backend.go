package naming

// What a registry backend kept in a package of its own (naming/consul, and
// any written outside shoal) uses from naming: a Backend value so that Open
// can open its URLs, and the helpers the built-in registries use, so every
// backend validates, orders and delivers instances alike.

// Backend is a kind of registry that Open can open by its URL scheme.
// memory:// and static:// are built in; a program opens any other by giving
// its package's Backend to Open — for example naming.Open(url,
// consul.Backend()) — so a program links only the registry clients it
// uses, and no package keeps a global table of them.
type Backend struct {
	// Scheme is the URL scheme it opens, e.g. "consul".
	Scheme string
	// Open returns the registry rawURL names. Its errors need not repeat
	// the URL: Open quotes it, secrets hidden.
	Open func(rawURL string) (Registry, error)
	// PublicParams are the query parameters whose values are never secret,
	// so that error messages may show them (others are redacted).
	PublicParams []string
}

// Refresher is implemented by a registry that can be asked to look again
// at once rather than at its next poll: the DNS registry re-resolves. A
// ClientProxy asks it when a connection to an instance fails, so an address
// a rolling update took away is replaced without waiting for the poll. The
// registry rate-limits the requests itself.
type Refresher interface {
	ResolveNow()
}

// Normalize checks in and returns a copy fit to store: the address in the
// "network@address" form (CanonicalAddr), the ID filled with DefaultID when
// empty, the weight and maps copied. An instance without a service or with
// a bad address is an error wrapping ErrInvalidInstance.
func Normalize(in *Instance) (*Instance, error) { return normalize(in) }

// SortInstances orders list as every registry delivers it: by ID, then
// address.
func SortInstances(list []*Instance) { sortInstances(list) }

// SameInstances reports whether two sorted lists hold equal instances, so a
// watch can skip delivering a list that did not change.
func SameInstances(a, b []*Instance) bool { return sameSnapshot(a, b) }

// CloneInstances deep-copies a list, so that every reader owns its instances.
func CloneInstances(list []*Instance) []*Instance { return cloneSnapshot(list) }

// Snapshots is the channel a Watch returns, with "latest wins" delivery: a
// buffer of one whose sender replaces a list the reader has not taken yet,
// so a slow reader only misses stale lists, never the newest, and the sender
// never blocks. One goroutine at a time may call Send and Close.
type Snapshots struct{ l *latest }

// NewSnapshots returns an empty Snapshots.
func NewSnapshots() *Snapshots { return &Snapshots{l: newLatest()} }

// C is the channel to return from Watch.
func (s *Snapshots) C() <-chan []*Instance { return s.l.ch }

// Send delivers list, dropping an unread older one.
func (s *Snapshots) Send(list []*Instance) { s.l.send(list) }

// Close closes the channel; the reader still receives a buffered list first.
func (s *Snapshots) Close() { s.l.close() }
