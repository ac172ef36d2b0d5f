package statecache

import "encoding/binary"

// An entry's encoding in bigcache:
//
//	flags (1) | len(version) (2) | version | len(durable) (2) | durable | len(commit) (1) | commit | value
//
// One allocation per write, and a read slices the copy bigcache returns.
const flagExists = 1

// remember caches e under id and returns a copy of e.Value that the caller owns (bigcache keeps
// a copy of its own), so write-behind buffers a change without copying it again. The caller
// holds id's stripe.
func (c *Cache) remember(id string, e cached) []byte {
	if len(e.Version) > 0xffff || len(e.durable) > 0xffff {
		c.mem.Delete(id) // no store makes versions this long; do not cache what cannot be encoded
		return append([]byte(nil), e.Value...)
	}
	if len(e.Commit) > 0xff {
		e.Commit = NoCommit // stores validate commits (MaxCommitBytes); never wrap the length
	}
	buf := make([]byte, 0, 6+len(e.Version)+len(e.durable)+len(e.Commit)+len(e.Value))
	var flags byte
	if e.Exists {
		flags = flagExists
	}
	buf = append(buf, flags)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(e.Version)))
	buf = append(buf, e.Version...)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(e.durable)))
	buf = append(buf, e.durable...)
	buf = append(buf, byte(len(e.Commit)))
	buf = append(buf, e.Commit...)
	header := len(buf)
	buf = append(buf, e.Value...)
	if err := c.mem.Set(id, buf); err != nil {
		// Too large for a shard: serve it from the store (or the dirty set) instead, and make
		// sure no older copy survives.
		c.mem.Delete(id)
	} else {
		c.touch(id)
	}
	return buf[header:len(buf):len(buf)]
}

// fromMemory returns id's cached entry, if any. Its version, durable version and commit are
// substrings of one string made of the encoding's header: one allocation for the three.
func (c *Cache) fromMemory(id string) (cached, bool) {
	b, err := c.mem.Get(id)
	if err != nil {
		return cached{}, false
	}
	var e cached
	e.Exists = b[0]&flagExists != 0
	nv := int(binary.BigEndian.Uint16(b[1:]))
	nd := int(binary.BigEndian.Uint16(b[3+nv:]))
	nc := int(b[5+nv+nd])
	header := 6 + nv + nd + nc
	h := string(b[:header])
	e.Version = Version(h[3 : 3+nv])
	e.durable = Version(h[5+nv : 5+nv+nd])
	e.Commit = Commit(h[6+nv+nd : header])
	if e.Exists {
		e.Value = b[header:]
	}
	return e, true
}
