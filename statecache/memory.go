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

// fromMemory returns id's cached entry, if any.
func (c *Cache) fromMemory(id string) (cached, bool) {
	b, err := c.mem.Get(id)
	if err != nil {
		return cached{}, false
	}
	var e cached
	e.Exists = b[0]&flagExists != 0
	n := int(binary.BigEndian.Uint16(b[1:]))
	e.Version = Version(b[3 : 3+n])
	b = b[3+n:]
	n = int(binary.BigEndian.Uint16(b))
	e.durable = Version(b[2 : 2+n])
	b = b[2+n:]
	n = int(b[0])
	e.Commit = Commit(b[1 : 1+n])
	if e.Exists {
		e.Value = b[1+n:]
	}
	return e, true
}
