package naming

// latest is a "latest wins" snapshot channel: a channel with a buffer of one
// whose single sender replaces a value the reader has not taken yet. A slow
// reader therefore only ever misses stale snapshots, never the newest one,
// and the sender never blocks.
//
// Exactly one goroutine (or one goroutine at a time, under a lock) may call
// send and close.
type latest struct {
	ch chan []*Instance
}

func newLatest() *latest {
	return &latest{ch: make(chan []*Instance, 1)}
}

// send delivers snap, dropping an unread older snapshot if there is one.
func (l *latest) send(snap []*Instance) {
	for {
		select {
		case l.ch <- snap:
			return
		default:
		}
		// The buffer holds a stale snapshot: drop it. The reader may have
		// taken it meanwhile, in which case there is nothing to drop and
		// the next send succeeds.
		select {
		case <-l.ch:
		default:
		}
	}
}

// close closes the channel; the reader still receives a buffered snapshot
// before it sees the channel closed.
func (l *latest) close() {
	close(l.ch)
}

// cloneSnapshot deep-copies a snapshot so every reader owns its instances.
func cloneSnapshot(list []*Instance) []*Instance {
	out := make([]*Instance, len(list))
	for i, in := range list {
		out[i] = cloneInstance(in)
	}
	return out
}
