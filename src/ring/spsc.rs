//! SPSC protocol: variable-length records in a power-of-two byte ring.
//!
//! Cursors are `u64` byte counts that only grow (they would take centuries to
//! wrap); a cursor's position in the ring is `cursor & (capacity - 1)`.
//!
//! A record is an 8-byte header word `tag << 32 | len` followed by `len`
//! payload bytes, padded to a multiple of 8. A record never wraps: when it does
//! not fit before the end of the ring, a padding record (tag `PAD`) fills the
//! rest and the record starts at position 0. The header word is written with a
//! Relaxed atomic store; the producer's Release store of `tail` publishes it
//! together with the payload (one store per commit, or per batch). The consumer
//! reads `tail` with Acquire, then each header word once, validates it against
//! the capacity and `tail`, and frees space with a Release store of `head`.

use crate::error::{Corruption, Error};
use crate::layout::{CONS_AT, PROD_AT, RECORD_HEADER, TAG_MSG, TAG_PAD};
use crate::region::Mem;
use crate::sync::Ordering;

const fn header_word(len: u32, tag: u32) -> u64 {
    ((tag as u64) << 32) | len as u64
}

/// Bytes a record of `len` payload bytes takes in the ring.
pub(crate) const fn record_size(len: u64) -> u64 {
    RECORD_HEADER as u64 + len.next_multiple_of(8)
}

/// Largest payload a ring of `capacity` bytes accepts: half the ring minus a
/// record header, and no more than the header's 32-bit length field can say
/// (`u32::MAX`, for rings above 8 GiB). Half, because a record must be
/// contiguous: wherever the write position is, a record of at most half the
/// ring fits either before the end or, after a padding record, at the start
/// once the consumer has caught up.
pub(crate) const fn max_message_len(capacity: u64) -> usize {
    let half = capacity / 2 - RECORD_HEADER as u64;
    if half > u32::MAX as u64 {
        u32::MAX as usize
    } else {
        half as usize
    }
}

fn corrupted(mem: &Mem, what: &'static str, at: Option<u64>, value: u64) -> Error {
    // Relaxed: a diagnostic flag for tools (`shmq stat`); nothing is ordered by it.
    mem.header().meta.poisoned.store(1, Ordering::Relaxed);
    Error::Corrupted(Corruption::new(what, at, value))
}

/// Checks the shared cursors an endpoint starts from.
fn check_cursors(mem: &Mem, tail: u64, head: u64, cap: u64) -> Option<Error> {
    if tail % 8 != 0 || head > tail || tail - head > cap {
        return Some(corrupted(
            mem,
            "write cursor out of range at attach",
            PROD_AT,
            tail,
        ));
    }
    if head % 8 != 0 {
        return Some(corrupted(
            mem,
            "read cursor out of range at attach",
            CONS_AT,
            head,
        ));
    }
    None
}

/// A reserved but not yet committed record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reservation {
    /// Cursor of the record header (after any padding).
    pub start: u64,
    /// Bytes of padding record before `start` (0 if none).
    pub pad: u64,
    /// Payload bytes reserved.
    pub len: usize,
}

/// A validated record to read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    /// Cursor of the first payload byte.
    pub payload: u64,
    pub len: usize,
    /// Cursor just past the record.
    pub next: u64,
}

/// The producer's private state.
#[derive(Debug)]
pub(crate) struct ProducerRing {
    cap: u64,
    /// Next write cursor, including committed but unpublished records.
    tail: u64,
    /// Last value stored to the shared `tail`.
    published: u64,
    /// Last `head` seen; refreshed only when it says "full".
    head_cache: u64,
}

impl ProducerRing {
    /// Starts from the shared cursors.
    pub(crate) fn attach(mem: &Mem) -> Result<ProducerRing, Error> {
        let cap = mem.geometry().capacity;
        let h = mem.header();
        // Acquire: pairs with the Release stores of earlier endpoints, so that
        // we continue from a state they finished writing.
        let tail = h.prod.load(Ordering::Acquire);
        let head = h.cons.load(Ordering::Acquire);
        if let Some(e) = check_cursors(mem, tail, head, cap) {
            return Err(e);
        }
        Ok(ProducerRing {
            cap,
            tail,
            published: tail,
            head_cache: head,
        })
    }

    pub(crate) fn max_message_len(&self) -> usize {
        max_message_len(self.cap)
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    /// Whether committed records wait for `publish`.
    pub(crate) fn has_unpublished(&self) -> bool {
        self.tail != self.published
    }

    /// Reserves room for a record of `len` payload bytes. With `slack > 0`,
    /// while the ring is full, reports `Full` until `slack` bytes beyond the
    /// record are free too. A producer spinning on a
    /// full ring then waits for a stretch of free space instead of taking each
    /// freed record at once, so the two sides stop bouncing the cursor lines
    /// between their caches one message at a time.
    pub(crate) fn try_reserve_slack(
        &mut self,
        mem: &Mem,
        len: usize,
        slack: u64,
    ) -> Result<Reservation, Error> {
        let max = self.max_message_len();
        if len > max {
            return Err(Error::TooLarge { len, max });
        }
        // Our own cursor, but it started from the segment's at attach: one
        // near `u64::MAX` (a scribbling peer; never reached in practice)
        // would overflow `tail + pad + need` below.
        if self.tail > u64::MAX - 2 * self.cap {
            return Err(corrupted(
                mem,
                "write cursor out of range",
                PROD_AT,
                self.tail,
            ));
        }
        let need = record_size(len as u64);
        let pos = self.tail & (self.cap - 1);
        let contiguous = self.cap - pos;
        let pad = if need <= contiguous { 0 } else { contiguous };
        let total = pad + need;
        // The room to wait for: the record (with its padding) and the
        // slack, but never more than the whole ring, so that the wait ends
        // once the consumer drains. (`pad < need <= cap / 2`, so the record
        // alone always fits an empty ring.)
        let want = (total + slack).min(self.cap);
        if self.tail - self.head_cache + want > self.cap {
            // Possibly full: refresh the cached head, then check again.
            // Acquire: pairs with the consumer's Release store of `head` in
            // `ConsumerRing::publish`; its reads of the bytes it released
            // happen-before our writes into them.
            let head = mem.header().cons.load(Ordering::Acquire);
            if head % 8 != 0 || head < self.head_cache || head > self.published {
                return Err(corrupted(
                    mem,
                    "consumer cursor out of range",
                    CONS_AT,
                    head,
                ));
            }
            self.head_cache = head;
            if self.tail - head + want > self.cap {
                return Err(Error::Full);
            }
        }
        Ok(Reservation {
            start: self.tail + pad,
            pad,
            len,
        })
    }

    /// The payload bytes of a reservation.
    pub(crate) fn payload(&self, mem: &Mem, r: &Reservation) -> *mut u8 {
        mem.bytes((r.start & (self.cap - 1)) + RECORD_HEADER as u64, r.len)
    }

    /// Writes the record headers for `n <= r.len` payload bytes. Not visible
    /// to the consumer until `publish`.
    ///
    /// # Panics
    /// If `n > r.len`.
    pub(crate) fn commit(&mut self, mem: &Mem, r: &Reservation, n: usize) {
        assert!(n <= r.len, "committed {n} bytes of a {}-byte grant", r.len);
        let mask = self.cap - 1;
        if r.pad > 0 {
            // Relaxed: published by the Release store of `tail` in `publish`.
            mem.word(self.tail & mask)
                .store(header_word((r.pad - 8) as u32, TAG_PAD), Ordering::Relaxed);
        }
        // Relaxed: published by the Release store of `tail` in `publish`.
        mem.word(r.start & mask)
            .store(header_word(n as u32, TAG_MSG), Ordering::Relaxed);
        self.tail = r.start + record_size(n as u64);
    }

    /// Makes every committed record visible with one store. Returns whether
    /// anything was published (then the caller wakes the consumer).
    pub(crate) fn publish(&mut self, mem: &Mem) -> bool {
        if self.tail == self.published {
            return false;
        }
        // Release: pairs with the consumer's Acquire load of `tail` in
        // `ConsumerRing::try_peek`; the record headers and payloads written
        // before this store are visible to it.
        mem.header().prod.store(self.tail, Ordering::Release);
        self.published = self.tail;
        true
    }

    /// Bytes in the ring as far as this producer knows (upper bound).
    pub(crate) fn used(&self) -> u64 {
        self.tail - self.head_cache
    }
}

/// The consumer's private state.
#[derive(Debug)]
pub(crate) struct ConsumerRing {
    cap: u64,
    /// Next read cursor, including read but unreleased records.
    head: u64,
    /// Last value stored to the shared `head`.
    released: u64,
    /// Last `tail` seen; refreshed only when it says "empty".
    tail_cache: u64,
}

impl ConsumerRing {
    /// Starts from the shared cursors.
    pub(crate) fn attach(mem: &Mem) -> Result<ConsumerRing, Error> {
        let cap = mem.geometry().capacity;
        let h = mem.header();
        // Acquire: as in `ProducerRing::attach`.
        let head = h.cons.load(Ordering::Acquire);
        let tail = h.prod.load(Ordering::Acquire);
        if let Some(e) = check_cursors(mem, tail, head, cap) {
            return Err(e);
        }
        Ok(ConsumerRing {
            cap,
            head,
            released: head,
            tail_cache: tail,
        })
    }

    /// Refreshes the cached tail; `true` if there is something to read.
    fn refresh(&mut self, mem: &Mem) -> Result<bool, Error> {
        // Acquire: pairs with the producer's Release store of `tail` in
        // `ProducerRing::publish`: what it wrote before is visible now.
        let tail = mem.header().prod.load(Ordering::Acquire);
        if tail % 8 != 0 || tail < self.tail_cache || tail - self.head > self.cap {
            return Err(corrupted(
                mem,
                "producer cursor out of range",
                PROD_AT,
                tail,
            ));
        }
        self.tail_cache = tail;
        Ok(tail != self.head)
    }

    /// The next record, without consuming it. Skips padding.
    pub(crate) fn try_peek(&mut self, mem: &Mem) -> Result<Record, Error> {
        let mask = self.cap - 1;
        // At most one padding record precedes a message: after it the position
        // is 0, where padding is invalid. So two rounds suffice.
        for _ in 0..2 {
            if self.head == self.tail_cache && !self.refresh(mem)? {
                return Err(Error::Empty);
            }
            let pos = self.head & mask;
            let avail = self.tail_cache - self.head;
            // Relaxed: ordered after the Acquire load of `tail` that covered
            // this record (in `refresh`, now or earlier).
            let word = mem.word(pos).load(Ordering::Relaxed);
            let (len, tag) = (word as u32 as u64, (word >> 32) as u32);
            match tag {
                TAG_PAD => {
                    let size = self.cap - pos;
                    if pos == 0 || len + 8 != size || size > avail {
                        return Err(corrupted(mem, "bad padding record", mem.at_data(pos), word));
                    }
                    self.head += size;
                }
                TAG_MSG => {
                    let size = record_size(len);
                    if len > max_message_len(self.cap) as u64
                        || pos + size > self.cap
                        || size > avail
                    {
                        return Err(corrupted(mem, "bad record length", mem.at_data(pos), word));
                    }
                    return Ok(Record {
                        payload: self.head + RECORD_HEADER as u64,
                        len: len as usize,
                        next: self.head + size,
                    });
                }
                _ => return Err(corrupted(mem, "bad record tag", mem.at_data(pos), word)),
            }
        }
        let pos = self.head & mask;
        Err(corrupted(mem, "padding after padding", mem.at_data(pos), 0))
    }

    /// The payload bytes of a record.
    pub(crate) fn payload(&self, mem: &Mem, r: &Record) -> *mut u8 {
        mem.bytes(r.payload & (self.cap - 1), r.len)
    }

    /// Consumes `r` locally; the producer sees the space after `publish`.
    pub(crate) fn release(&mut self, r: &Record) {
        self.head = r.next;
    }

    /// Frees every released record with one store. Returns whether anything
    /// was freed (then the caller wakes the producer).
    pub(crate) fn publish(&mut self, mem: &Mem) -> bool {
        if self.head == self.released {
            return false;
        }
        // Release: pairs with the producer's Acquire load of `head` in
        // `ProducerRing::try_reserve_slack`: our reads of the freed bytes
        // happen-before it overwrites them.
        mem.header().cons.store(self.head, Ordering::Release);
        self.released = self.head;
        true
    }

    /// Whether the ring looked empty at the last refresh.
    pub(crate) fn looks_empty(&self) -> bool {
        self.head == self.tail_cache
    }
}
