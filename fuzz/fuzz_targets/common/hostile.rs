//! Hostile words: where a scribbling peer writes and what, biased toward the
//! words the protocols read (cursors, endpoint table, record headers, slot
//! sequence and info words) and toward values near the current ones.

use arbitrary::Arbitrary;

/// Where in the region a word goes.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Where {
    /// The producer (write / enqueue) cursor.
    Prod,
    /// The consumer (read / dequeue) cursor.
    Cons,
    /// Endpoint slot `i`: its state/pid word or its claim word.
    Endpoint { i: u8, claiming: bool },
    /// A word of the header's first line (magic, geometry, counters).
    Meta(u8),
    /// Data-area word `k` (wrapped).
    Data(u16),
    /// MPMC: slot `i`'s sequence or info word. SPSC: the record header at a
    /// cursor plus `i` words.
    Slot { i: u8, info: bool, from_cons: bool },
    /// A wake word's `epoch | waiters << 32` (consumers' `not_empty` or
    /// producers' `not_full`).
    Wake { not_full: bool },
    /// Anywhere (8-aligned, wrapped).
    Any(u16),
}

/// What word is written.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Val {
    Raw(u64),
    /// The word's current value plus a small delta.
    Delta(i16),
    /// A cursor's current value plus a small delta (sequence numbers and
    /// cursors are compared with each other).
    CursorRel {
        cons: bool,
        delta: i16,
    },
    /// An SPSC record header or an MPMC info word: tag/kind `k`, length.
    Tagged {
        k: u8,
        len: u32,
    },
    Special(u8),
}

const SPECIAL: [u64; 14] = [
    0,
    1,
    8,
    u64::MAX,
    u64::MAX - 7,
    u64::MAX - 1,
    1 << 63,
    i64::MAX as u64,
    u32::MAX as u64,
    1 << 32,
    1 << 40,
    0xffff_fff8,
    // Many sleepers in a wake word.
    0xffff_ffff_0000_0000,
    // The header word holding `state` (READY) and `wake` (semaphore).
    (2 << 32) | 0x5245_4459,
];

/// The region's shape, for turning a `Where` into an offset.
pub struct Shape {
    pub total: usize,
    pub data_offset: usize,
    pub data_len: usize,
    pub endpoints: usize,
    /// MPMC: slots and stride; SPSC: `None`.
    pub slots: Option<(u64, u64)>,
    pub tags: &'static [u32],
}

pub const TABLE_OFFSET: usize = 640;
pub const PROD: usize = 128;
pub const CONS: usize = 256;

impl Shape {
    /// Byte offset of `w`; `peek` reads the current words.
    pub fn offset(&self, w: Where, peek: &dyn Fn(usize) -> u64) -> usize {
        let off = match w {
            Where::Prod => PROD,
            Where::Cons => CONS,
            Where::Endpoint { i, claiming } => {
                TABLE_OFFSET + (i as usize % self.endpoints) * 16 + if claiming { 8 } else { 0 }
            }
            Where::Meta(k) => (k as usize % 16) * 8,
            Where::Data(k) => self.data_offset + (k as usize * 8) % self.data_len,
            Where::Slot { i, info, from_cons } => {
                let cursor = peek(if from_cons { CONS } else { PROD });
                match self.slots {
                    Some((n, stride)) => {
                        let slot = (cursor.wrapping_add(i as u64)) & (n - 1);
                        self.data_offset + (slot * stride) as usize + if info { 8 } else { 0 }
                    }
                    None => {
                        let at = cursor.wrapping_add(8 * i as u64) & !7;
                        self.data_offset + (at % self.data_len as u64) as usize
                    }
                }
            }
            Where::Wake { not_full } => 3 * 128 + if not_full { 128 } else { 0 },
            Where::Any(k) => (k as usize * 8) % self.total,
        };
        off & !7
    }

    pub fn value(&self, v: Val, off: usize, peek: &dyn Fn(usize) -> u64) -> u64 {
        match v {
            Val::Raw(x) => x,
            Val::Delta(d) => peek(off).wrapping_add(d as i64 as u64),
            Val::CursorRel { cons, delta } => {
                peek(if cons { CONS } else { PROD }).wrapping_add(delta as i64 as u64)
            }
            Val::Tagged { k, len } => {
                (u64::from(self.tags[k as usize % self.tags.len()]) << 32) | u64::from(len)
            }
            Val::Special(k) => SPECIAL[k as usize % SPECIAL.len()],
        }
    }
}

/// One scribble.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Poke {
    pub at: Where,
    pub val: Val,
}
