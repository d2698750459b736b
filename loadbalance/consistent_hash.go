package loadbalance

import (
	"cmp"
	"context"
	"math/bits"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/shoalrpc/shoal/naming"
)

// chBalancer implements ConsistentHash: a hash ring with virtual nodes
// (Karger et al., "Consistent hashing and random trees", 1997; the ketama
// layout used by memcached clients and nginx's "hash … consistent").
//
// Each instance owns WithReplicas × weight points on a 64-bit ring (fewer,
// proportionally, if the ring would exceed maxRingPoints). The points of an
// instance are the SplitMix64 sequence seeded with the FNV-1a 64 hash of its
// ID, so they depend on the ID alone. A key is hashed with FNV-1a 64 followed
// by the murmur3 fmix64 finaliser and goes to the owner of the first point at
// or after its hash, wrapping around (found through a lookup table on the
// top bits of the hash, O(1) on average). Points are sorted by hash and then by
// instance ID, so the mapping depends only on the set of IDs and weights, not
// on the order given to Update: processes with the same set route a key
// identically. Adding one instance to n moves about 1/(n+1) of the keys, all
// onto the new instance; removing one moves only the keys it owned.
//
// The key comes from WithHashKey; without one it is the caller's identity
// (WithIdentity, "hostname/pid" by default), so that, like nginx's ip_hash,
// one client process sticks to one instance.
type chBalancer struct {
	cfg      *config
	identity uint64 // hash of cfg.identity
	snap     atomic.Pointer[chSnapshot]
}

// chSnapshot is one immutable ring.
type chSnapshot struct {
	instances []*naming.Instance // sorted by instance key
	points    []uint64           // sorted ring positions
	owners    []int32            // owners[i] indexes instances for points[i]

	// Lookup table over the top bits of the hash: the points of bucket
	// b = hash >> shift are points[table[b]:table[b+1]], about
	// pointsPerBucket of them, so Pick scans a few points instead of
	// binary-searching the ring (which misses the cache at every step).
	shift uint
	table []int32
}

// pointsPerBucket is the mean number of points per lookup-table bucket.
const pointsPerBucket = 4

// maxRingPoints bounds the size of a ring (12 bytes per point).
const maxRingPoints = 1 << 19

func newConsistentHash(cfg *config) *chBalancer {
	return &chBalancer{cfg: cfg, identity: hashString(cfg.identity)}
}

// Update implements Balancer.
func (b *chBalancer) Update(instances []*naming.Instance) {
	b.snap.Store(buildRing(instances, b.cfg.replicas))
}

// buildRing returns the ring of instances with replicas points per unit of
// weight.
func buildRing(instances []*naming.Instance, replicas int) *chSnapshot {
	ins := make([]*naming.Instance, 0, len(instances))
	for _, in := range instances {
		if in != nil {
			ins = append(ins, in)
		}
	}
	// Sort so that, of two instances with one ID, the same one is kept
	// whatever the input order.
	slices.SortFunc(ins, func(a, b *naming.Instance) int {
		return cmp.Or(strings.Compare(instanceKey(a), instanceKey(b)), strings.Compare(a.Addr, b.Addr))
	})
	ins = normalize(ins)

	counts := make([]int64, len(ins))
	var total int64
	for i, in := range ins {
		counts[i] = int64(replicas) * weightOf(in)
		total += counts[i]
	}
	if total > maxRingPoints {
		// Scale every instance down alike (counts[i] <= 2^32, so no overflow).
		sum := total
		total = 0
		for i := range counts {
			counts[i] = max(1, counts[i]*maxRingPoints/sum)
			total += counts[i]
		}
	}

	type point struct {
		hash  uint64
		owner int32
	}
	pts := make([]point, 0, total)
	for i, in := range ins {
		h := fnv1a(instanceKey(in))
		for r := range counts[i] {
			pts = append(pts, point{splitmix64(h + uint64(r+1)*0x9e3779b97f4a7c15), int32(i)})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.owner, b.owner))
	})

	s := &chSnapshot{
		instances: ins,
		points:    make([]uint64, len(pts)),
		owners:    make([]int32, len(pts)),
	}
	for i, p := range pts {
		s.points[i], s.owners[i] = p.hash, p.owner
	}
	bucketBits := bits.Len(uint(len(pts) / pointsPerBucket)) // 2^bits buckets
	s.shift = uint(64 - bucketBits)                          // 64 leaves one bucket
	s.table = make([]int32, 1<<bucketBits+1)
	i := 0
	for b := range s.table {
		for i < len(s.points) && s.points[i]>>s.shift < uint64(b) {
			i++
		}
		s.table[b] = int32(i)
	}
	return s
}

// successor returns the index of the first point at or after h, wrapping
// around to 0.
func (s *chSnapshot) successor(h uint64) int {
	b := h >> s.shift
	i, end := int(s.table[b]), int(s.table[b+1])
	for i < end && s.points[i] < h {
		i++
	}
	if i == len(s.points) {
		return 0
	}
	return i
}

// Pick implements Balancer.
func (b *chBalancer) Pick(ctx context.Context) (*naming.Instance, func(error), error) {
	s := b.snap.Load()
	if s == nil || len(s.points) == 0 {
		return nil, noopDone, b.cfg.emptyPick
	}
	h := b.identity
	if key, ok := hashKeyFrom(ctx); ok {
		h = hashString(key)
	}
	return s.instances[s.owners[s.successor(h)]], noopDone, nil
}

// FNV-1a 64 parameters (http://www.isthe.com/chongo/tech/comp/fnv/).
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnv1a returns the FNV-1a 64 hash of s without allocating.
func fnv1a(s string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// fmix64 is murmur3's 64-bit finaliser: a bijection with full avalanche, which
// spreads FNV's weak low-entropy differences over the whole ring.
func fmix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// splitmix64 is the output function of Vigna's SplitMix64 generator.
func splitmix64(x uint64) uint64 {
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hashString is the ring position of a key.
func hashString(s string) uint64 { return fmix64(fnv1a(s)) }
