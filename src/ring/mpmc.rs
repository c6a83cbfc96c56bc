//! MPMC protocol: Dmitry Vyukov's bounded queue over fixed-size slots, with a
//! per-slot `u64` sequence number, made safe against dead endpoints.
//!
//! Slot `i` serves positions `i, i + n, i + 2n, …` (`n` slots, a power of
//! two). For position `p` its sequence goes:
//!
//! | sequence | meaning |
//! |---|---|
//! | `p` | free for the producer that claims `p` |
//! | `p + 1` | published: holds a message for the consumer that claims `p` |
//! | `p + n` | released: free for the producer of the next lap |
//!
//! A producer claims `p` by CAS on the enqueue cursor when the slot reads `p`,
//! writes the payload and the info word, and publishes with a Release store of
//! `p + 1`. A consumer claims `p` by CAS on the dequeue cursor when the slot
//! reads `p + 1`, reads, and frees it with a Release store of `p + n`.
//!
//! Before each CAS the endpoint records `claiming = p + 1` in its endpoint
//! slot; the CAS (AcqRel) publishes that record. A survivor stuck on position
//! `p` can then find who claimed it, and if every endpoint that claims `p` is
//! dead, finish its work: a consumer marks an unpublished slot abandoned and
//! publishes it (consumers skip it); a producer frees a slot whose consumer
//! died holding it.
//!
//! Abandonment is one CAS of the sequence from `p` to `(p + 1) |
//! ABANDONED`: it succeeds only while the slot still waits for position
//! `p`'s producer, so a late decision (a consumer preempted after its
//! liveness probe, while others resolved `p` and the slot moved on to
//! `p + n`) cannot touch a later message. Nothing else is written into a
//! slot that has not been won.

use crate::error::{Corruption, Error};
use crate::layout::{
    CONS_AT, EndpointSlot, KIND_ABANDONED, KIND_MSG, KIND_SKIP, PROD_AT, SLOT_HEADER,
};
use crate::region::Mem;
use crate::region::SlotField::{Info, Seq};
use crate::sync::Ordering;

/// Sequence flag: position `p`'s producer died before publishing, and a
/// consumer resolved the slot as `(p + 1) | ABANDONED`. Positions stay below
/// `CURSOR_LIMIT`, far from this bit.
const ABANDONED: u64 = 1 << 63;

/// Cursors count messages one at a time from 0 and cannot legitimately get
/// anywhere near this (centuries at any rate); a value this high comes from
/// a scribbling peer. Below it, `pos + 1` and `pos + n` never overflow into
/// the `ABANDONED` bit.
const CURSOR_LIMIT: u64 = 1 << 62;

/// How many times a claim loop retries under contention before reporting
/// "not now" to its caller (who retries within its deadline). Bounds the work
/// a peer that keeps moving cursors can make us do.
const MAX_TRIES: u32 = 1 << 16;

/// Whether `pos`, a cursor value read from the region, is in range (see
/// [`CURSOR_LIMIT`]).
fn cursor_in_range(pos: u64) -> bool {
    pos < CURSOR_LIMIT
}

fn corrupted(mem: &Mem, what: &'static str, at: Option<u64>, value: u64) -> Error {
    // Relaxed: a diagnostic flag; nothing is ordered by it.
    mem.header().meta.poisoned.store(1, Ordering::Relaxed);
    Error::Corrupted(Corruption::new(what, at, value))
}

/// Geometry shared by producer and consumer state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slots {
    /// Number of slots (power of two).
    pub n: u64,
    /// Bytes per slot, header included (multiple of 8).
    pub size: u64,
}

impl Slots {
    pub(crate) fn of(mem: &Mem) -> Slots {
        let g = mem.geometry();
        Slots {
            n: g.capacity,
            size: u64::from(g.slot_size),
        }
    }
    pub(crate) fn max_message_len(&self) -> usize {
        self.size as usize - SLOT_HEADER
    }
    /// Writes the initial sequences (`i` for slot `i`). Creator only, before
    /// the segment is published.
    pub(crate) fn init(&self, mem: &Mem) {
        for i in 0..self.n {
            // Relaxed: published by the creator's Release store of READY (or,
            // on the heap, by handing the endpoints to other threads).
            mem.slot_word(i, Seq).store(i, Ordering::Relaxed);
        }
    }
}

/// A message a consumer took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Taken {
    pub pos: u64,
    pub len: usize,
    pub kind: u32,
}

/// Producer side: claims the next position.
#[inline(always)]
pub(crate) fn try_claim(mem: &Mem, s: &Slots, me: usize) -> Result<u64, Error> {
    claim(mem, s, me, mem.endpoint(me))
}

/// `try_claim`, with our endpoint slot `ep` (slot `me`) at hand.
#[inline(always)]
fn claim(mem: &Mem, s: &Slots, me: usize, ep: &EndpointSlot) -> Result<u64, Error> {
    match claim_first(mem, ep) {
        Some(pos) => Ok(pos),
        None => claim_loop(mem, s, me),
    }
}

/// The first try of `claim`, inlined: the slot is free for the cursor's
/// position and the CAS wins. `None`: nothing claimed (contention, full or
/// corrupted: `claim_loop` looks again and says which; a lost CAS may have
/// left `claiming` naming the position, which the loop overwrites on
/// every way out).
#[inline(always)]
fn claim_first(mem: &Mem, ep: &EndpointSlot) -> Option<u64> {
    let h = mem.header();
    // Relaxed: only a starting guess; the slot sequence and the CAS validate it.
    let pos = h.prod.load(Ordering::Relaxed);
    // The first try, inlined: the slot is free for `pos` and the CAS wins.
    // (Everything else, contention, full or corrupted, goes to the loop.)
    // Acquire: as in `claim_loop`.
    if cursor_in_range(pos) && mem.slot_word(pos, Seq).load(Ordering::Acquire) & !ABANDONED == pos {
        // Relaxed: published by the AcqRel CAS below.
        ep.claiming.store(pos + 1, Ordering::Relaxed);
        // AcqRel: as in `claim_loop`.
        if h.prod
            .compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return Some(pos);
        }
    }
    None
}

/// `try_claim` after its first try failed: retries under contention,
/// reports full and corrupted positions.
#[cold]
fn claim_loop(mem: &Mem, s: &Slots, me: usize) -> Result<u64, Error> {
    let h = mem.header();
    let claiming = &mem.endpoint(me).claiming;
    // Relaxed: only a starting guess; the slot sequence and the CAS validate it.
    let mut pos = h.prod.load(Ordering::Relaxed);
    for _ in 0..MAX_TRIES {
        if !cursor_in_range(pos) {
            // Relaxed: nothing is claimed (a failed CAS may have left our
            // record of an earlier guess).
            claiming.store(0, Ordering::Relaxed);
            return Err(corrupted(mem, "enqueue cursor out of range", PROD_AT, pos));
        }
        // Acquire: pairs with the consumer's Release store of `p + n` in
        // `release`: its reads of the old payload happen-before our writes.
        // An abandoned last lap (`(p - n + 1) | ABANDONED`) is not released
        // yet: without its flag it reads as "full", as it should.
        let seq = mem.slot_word(pos, Seq).load(Ordering::Acquire) & !ABANDONED;
        let diff = seq.wrapping_sub(pos) as i64;
        if diff == 0 {
            // Relaxed: published by the AcqRel CAS below.
            claiming.store(pos + 1, Ordering::Relaxed);
            // AcqRel: Release publishes `claiming` to anyone who sees the new
            // cursor with Acquire (`claim_of`); Acquire orders our slot writes
            // after winning.
            match h
                .prod
                .compare_exchange_weak(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(pos),
                Err(cur) => pos = cur,
            }
        } else if diff < 0 {
            if diff < -(s.n as i64) {
                // Relaxed: nothing is claimed.
                claiming.store(0, Ordering::Relaxed);
                return Err(corrupted(
                    mem,
                    "slot sequence behind its lap",
                    mem.at_data(mem.slot_offset(pos)),
                    seq,
                ));
            }
            // The slot still holds last lap's message: full.
            // Relaxed: nothing is claimed.
            claiming.store(0, Ordering::Relaxed);
            return Err(Error::Full);
        } else {
            // Another producer took `pos`; start again from the cursor.
            // Relaxed: coherence is enough. The sequence we just loaded
            // (Acquire) is ahead of `pos` only after a producer's claim CAS
            // moved the cursor past `pos` (that CAS happens-before the
            // publish or release we saw), so this load cannot return `pos`.
            let cur = h.prod.load(Ordering::Relaxed);
            if cur == pos {
                // A sequence ahead of an unmoved cursor is scribbled: report
                // it now rather than spinning `MAX_TRIES` times per call.
                // Relaxed: nothing is claimed.
                claiming.store(0, Ordering::Relaxed);
                let at = mem.at_data(mem.slot_offset(pos));
                return Err(corrupted(
                    mem,
                    "slot sequence ahead of the enqueue cursor",
                    at,
                    seq,
                ));
            }
            pos = cur;
        }
    }
    // Relaxed: nothing is claimed.
    claiming.store(0, Ordering::Relaxed);
    Err(Error::Full)
}

/// Publishes the claimed position `pos` with `len` payload bytes of `kind`.
#[inline]
pub(crate) fn publish(mem: &Mem, me: usize, pos: u64, len: usize, kind: u32) {
    publish_ep(mem, mem.endpoint(me), pos, len, kind);
}

/// `publish`, with our endpoint slot `ep` at hand.
#[inline(always)]
fn publish_ep(mem: &Mem, ep: &EndpointSlot, pos: u64, len: usize, kind: u32) {
    // Relaxed: published by the Release store of the sequence below.
    mem.slot_word(pos, Info)
        .store(((kind as u64) << 32) | len as u64, Ordering::Relaxed);
    // Release: pairs with the consumer's Acquire sequence load in `try_take`;
    // the payload and info word are visible to it.
    mem.slot_word(pos, Seq).store(pos + 1, Ordering::Release);
    // Relaxed: only a hint for survivors, which re-check the sequence.
    ep.claiming.store(0, Ordering::Relaxed);
}

/// The quick send, for fronts that keep its result in a register (a
/// `bool`, not a `Result` whose error the out of line paths write through
/// memory): claims a slot at the first try, copies `msg` into it and
/// publishes it as a message. `false`: nothing claimed or written (full,
/// contended or corrupted: the general path claims again and says which).
///
/// # Panics
/// If `msg` is longer than a slot's payload (the caller checks first).
#[inline(always)]
pub(crate) fn try_send_first(mem: &Mem, me: usize, msg: &[u8]) -> bool {
    let ep = mem.endpoint(me);
    let Some(pos) = claim_first(mem, ep) else {
        return false;
    };
    let dst = mem.slot_payload(pos, msg.len());
    // SAFETY: we won the claim of `pos`: no consumer reads this slot's
    // payload until we publish it; `msg` fits the payload (`slot_payload`
    // checked) and is the caller's memory, so the two do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), dst, msg.len()) };
    publish_ep(mem, ep, pos, msg.len(), KIND_MSG);
    true
}

/// Copies the `len` payload bytes of the slot of position `pos` (taken, not
/// yet released) into `buf`; `BufferTooSmall` if they do not fit.
#[inline(always)]
fn copy_payload(mem: &Mem, pos: u64, len: usize, buf: &mut [u8]) -> Result<usize, Error> {
    let Some(dst) = buf.get_mut(..len) else {
        return Err(Error::BufferTooSmall {
            needed: len,
            capacity: buf.len(),
        });
    };
    let src = mem.slot_payload(pos, len);
    // SAFETY: the payload starts 8-aligned (slot stride and header are
    // multiples of 8) and `len` (validated against the payload size when
    // the slot was taken) rounded up to 8 stays inside the slot, whose
    // payload area is a multiple of 8 bytes; `copy_out` reads it with
    // atomic loads, never through a reference.
    unsafe { crate::sync::copy_out(src, dst) };
    Ok(len)
}

/// Consumer side: takes the next published slot.
#[inline(always)]
pub(crate) fn try_take(mem: &Mem, s: &Slots, me: usize) -> Result<Taken, Error> {
    take(mem, s, me, mem.endpoint(me))
}

/// Copies the payload of the message `t` (taken, not yet released) into
/// `buf`; `BufferTooSmall` if it does not fit.
#[inline(always)]
pub(crate) fn copy_out(mem: &Mem, t: &Taken, buf: &mut [u8]) -> Result<usize, Error> {
    copy_payload(mem, t.pos, t.len, buf)
}

/// `try_take`, with our endpoint slot `ep` (slot `me`) at hand.
#[inline(always)]
fn take(mem: &Mem, s: &Slots, me: usize, ep: &EndpointSlot) -> Result<Taken, Error> {
    match take_first(mem, ep) {
        Some((pos, info)) => check_taken(mem, s, me, pos, info),
        None => take_loop(mem, s, me),
    }
}

/// The first try of `try_take`, for fronts that keep its result in
/// registers (an `Option` of two words, not a `Result` whose error the out
/// of line paths write through memory). `Some((pos, info))`: position
/// `pos` is ours (the CAS won) and `info` is its info word, read once and
/// not yet checked: pass it to [`message_of`], else to [`check_taken`].
/// `None`: nothing claimed (no slot published at the cursor, or another
/// consumer won it); `try_take` looks again and says why.
#[inline(always)]
pub(crate) fn try_take_first(mem: &Mem, me: usize) -> Option<(u64, u64)> {
    take_first(mem, mem.endpoint(me))
}

#[inline(always)]
fn take_first(mem: &Mem, ep: &EndpointSlot) -> Option<(u64, u64)> {
    let h = mem.header();
    // Relaxed: a starting guess, validated by the sequence and the CAS.
    let pos = h.cons.load(Ordering::Relaxed);
    // A message (or skip record; not an abandoned slot) is published at
    // `pos` and the CAS wins. Everything else goes to the loop, which looks
    // again (and stores `claiming` on every way out).
    // Acquire: as in `take_loop`.
    if cursor_in_range(pos) && mem.slot_word(pos, Seq).load(Ordering::Acquire) == pos + 1 {
        // Relaxed: published by the AcqRel CAS below.
        ep.claiming.store(pos + 1, Ordering::Relaxed);
        // AcqRel: as in `take_loop`.
        if h.cons
            .compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // Relaxed: ordered after the Acquire sequence load that saw it
            // published.
            return Some((pos, mem.slot_word(pos, Info).load(Ordering::Relaxed)));
        }
    }
    None
}

/// The message at `pos` if `info` (its info word, read once) says it is a
/// valid one: what every quick take checks. `None` for anything else,
/// which [`check_taken`] sorts out.
#[inline(always)]
pub(crate) fn message_of(s: &Slots, pos: u64, info: u64) -> Option<Taken> {
    let (len, kind) = info_parts(info);
    (kind == KIND_MSG && len <= s.max_message_len()).then_some(Taken { pos, len, kind })
}

/// An info word's length (low half) and kind (high half), unchecked.
#[inline(always)]
fn info_parts(info: u64) -> (usize, u32) {
    (info as u32 as usize, (info >> 32) as u32)
}

/// Reads and checks the info word of the position `pos` just taken (its
/// sequence said published, not abandoned).
#[inline(always)]
fn taken(mem: &Mem, s: &Slots, me: usize, pos: u64) -> Result<Taken, Error> {
    // Relaxed: ordered after the Acquire sequence load that saw it published.
    let info = mem.slot_word(pos, Info).load(Ordering::Relaxed);
    check_taken(mem, s, me, pos, info)
}

/// Checks `info`, the info word (read once) of the position `pos` just
/// taken: a message or a skip record, else the slot is freed and reported
/// `Corrupted`.
#[inline(always)]
pub(crate) fn check_taken(
    mem: &Mem,
    s: &Slots,
    me: usize,
    pos: u64,
    info: u64,
) -> Result<Taken, Error> {
    let (len, kind) = info_parts(info);
    if !matches!(kind, KIND_MSG | KIND_SKIP) || len > s.max_message_len() {
        return Err(bad_info(mem, s, me, pos, info));
    }
    Ok(Taken { pos, len, kind })
}

/// A taken slot's info word is invalid: frees the slot so producers are not
/// wedged, then reports it.
#[cold]
fn bad_info(mem: &Mem, s: &Slots, me: usize, pos: u64, info: u64) -> Error {
    release(mem, s, me, pos);
    let at = mem.at_data(mem.slot_offset(pos) + 8);
    corrupted(mem, "bad slot info word", at, info)
}

/// `try_take` after its first try failed: retries under contention,
/// reports empty and corrupted positions, takes abandoned slots.
#[cold]
fn take_loop(mem: &Mem, s: &Slots, me: usize) -> Result<Taken, Error> {
    let h = mem.header();
    let claiming = &mem.endpoint(me).claiming;
    // Relaxed: a starting guess, validated by the sequence and the CAS.
    let mut pos = h.cons.load(Ordering::Relaxed);
    for _ in 0..MAX_TRIES {
        if !cursor_in_range(pos) {
            // Relaxed: nothing is claimed (as in `try_claim`).
            claiming.store(0, Ordering::Relaxed);
            return Err(corrupted(mem, "dequeue cursor out of range", CONS_AT, pos));
        }
        // Acquire: pairs with the producer's Release publish in `publish`
        // (and the Release CAS in `abandon`).
        let raw = mem.slot_word(pos, Seq).load(Ordering::Acquire);
        let abandoned = raw & ABANDONED != 0;
        let seq = raw & !ABANDONED;
        let diff = seq.wrapping_sub(pos + 1) as i64;
        if diff == 0 {
            // Relaxed: published by the AcqRel CAS below.
            claiming.store(pos + 1, Ordering::Relaxed);
            // AcqRel: Release publishes `claiming` (see `try_claim`).
            match h
                .cons
                .compare_exchange_weak(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) if abandoned => {
                    // Its producer died before writing: nothing to read.
                    return Ok(Taken {
                        pos,
                        len: 0,
                        kind: KIND_ABANDONED,
                    });
                }
                Ok(_) => return taken(mem, s, me, pos),
                Err(cur) => pos = cur,
            }
        } else if diff < 0 {
            if diff < -(s.n as i64) - 1 {
                // Relaxed: nothing is claimed.
                claiming.store(0, Ordering::Relaxed);
                return Err(corrupted(
                    mem,
                    "slot sequence behind its lap",
                    mem.at_data(mem.slot_offset(pos)),
                    seq,
                ));
            }
            // Relaxed: nothing is claimed.
            claiming.store(0, Ordering::Relaxed);
            return Err(Error::Empty);
        } else {
            // Another consumer took `pos`. Relaxed: as in `try_claim`, the
            // cursor has moved past `pos` unless a peer scribbled.
            let cur = h.cons.load(Ordering::Relaxed);
            if cur == pos {
                // Relaxed: nothing is claimed.
                claiming.store(0, Ordering::Relaxed);
                let at = mem.at_data(mem.slot_offset(pos));
                return Err(corrupted(
                    mem,
                    "slot sequence ahead of the dequeue cursor",
                    at,
                    raw,
                ));
            }
            pos = cur;
        }
    }
    // Relaxed: nothing is claimed.
    claiming.store(0, Ordering::Relaxed);
    Err(Error::Empty)
}

/// Frees the slot a consumer took.
#[inline]
pub(crate) fn release(mem: &Mem, s: &Slots, me: usize, pos: u64) {
    release_ep(mem, s, mem.endpoint(me), pos);
}

/// `release`, with our endpoint slot `ep` at hand.
#[inline(always)]
fn release_ep(mem: &Mem, s: &Slots, ep: &EndpointSlot, pos: u64) {
    // Release: pairs with the producer's Acquire sequence load in `try_claim`.
    mem.slot_word(pos, Seq).store(pos + s.n, Ordering::Release);
    // Relaxed: only a hint for survivors, which re-check the sequence.
    ep.claiming.store(0, Ordering::Relaxed);
}

/// Where the consumer side stands when `try_take` says empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stall {
    /// Nothing claimed beyond the dequeue cursor: really empty.
    Empty,
    /// Position `p` was claimed by a producer but is not published yet.
    InFlight(u64),
}

/// Consumer view: is the next position claimed but unpublished?
pub(crate) fn consumer_stall(mem: &Mem) -> Stall {
    let h = mem.header();
    // Acquire: pairs with the AcqRel claim CAS, so a later `claim_of` sees the
    // claimer's `claiming` record.
    let pos = h.cons.load(Ordering::Acquire);
    let enq = h.prod.load(Ordering::Acquire);
    // Acquire: pairs with `publish`.
    let seq = mem.slot_word(pos, Seq).load(Ordering::Acquire);
    if enq > pos && seq == pos {
        Stall::InFlight(pos)
    } else {
        Stall::Empty
    }
}

/// Producer view: is the slot we need held by a consumer that took it but has
/// not released it? Returns the position that consumer took.
pub(crate) fn producer_stall(mem: &Mem, s: &Slots) -> Option<u64> {
    let h = mem.header();
    // Acquire: as in `consumer_stall`.
    let pos = h.prod.load(Ordering::Acquire);
    let deq = h.cons.load(Ordering::Acquire);
    let prev = pos.checked_sub(s.n)?;
    // Acquire: pairs with `release`. (A taken abandoned slot counts too: its
    // consumer may die before releasing it.)
    let seq = mem.slot_word(pos, Seq).load(Ordering::Acquire) & !ABANDONED;
    (deq > prev && seq == prev + 1).then_some(prev)
}

/// The endpoint slots in `range` that record a claim of `pos`.
pub(crate) fn claimers(mem: &Mem, range: std::ops::Range<usize>, pos: u64) -> Vec<usize> {
    range
        .filter(|&i| {
            // Acquire: pairs with the AcqRel claim CAS that published it.
            mem.endpoint(i).claiming.load(Ordering::Acquire) == pos + 1
        })
        .collect()
}

/// Consumer-side recovery: resolves the unpublished slot `pos` as abandoned,
/// with one CAS of its sequence from `pos` (still waiting for `pos`'s
/// producer) to `(pos + 1) | ABANDONED`. Call only when every producer
/// claiming `pos` is dead. Returns whether this call did it: it does nothing
/// once `pos` was resolved (published, or abandoned by another consumer),
/// however late the call comes.
/// The sequence of a slot whose position `pos` was abandoned.
const fn abandoned_seq(pos: u64) -> u64 {
    (pos + 1) | ABANDONED
}

pub(crate) fn abandon(mem: &Mem, pos: u64, dead: &[usize]) -> bool {
    if !cursor_in_range(pos) {
        return false;
    }
    // Release: pairs with the Acquire sequence load in `try_take`; it
    // orders nothing that matters (nothing is written before it that
    // anyone reads: the info word of an abandoned slot is never read), so
    // Relaxed would do too (scripts/loom-mutants.sh: an equivalent mutant).
    let done = mem
        .slot_word(pos, Seq)
        .compare_exchange(
            pos,
            abandoned_seq(pos),
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_ok();
    for &i in dead {
        // Relaxed: clears a stale hint; the claim is resolved now.
        let _ = mem.endpoint(i).claiming.compare_exchange(
            pos + 1,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    done
}

/// Producer-side recovery: frees the slot at `prev` that a dead consumer took
/// and never released (a message, or an abandoned slot). Returns whether
/// this call did it: a CAS from the taken sequence, so it does nothing once
/// the slot was released.
pub(crate) fn reclaim(mem: &Mem, s: &Slots, prev: u64, dead: &[usize]) -> bool {
    let seq = mem.slot_word(prev, Seq);
    let release = |from: u64| {
        // Release: pairs with the Acquire sequence load in `try_claim`.
        seq.compare_exchange(from, prev + s.n, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    };
    let done = release(prev + 1) || release((prev + 1) | ABANDONED);
    for &i in dead {
        // Relaxed: clears a stale hint.
        let _ = mem.endpoint(i).claiming.compare_exchange(
            prev + 1,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    done
}

/// Whether a dead endpoint's recorded claim still matters (its slot may only
/// be reused once it does not). `producer` says which side it was.
pub(crate) fn claim_unresolved(mem: &Mem, claim: u64, producer: bool) -> bool {
    if claim == 0 {
        return false;
    }
    let pos = claim - 1;
    let h = mem.header();
    // Acquire loads: pair with the claim CASes and publishes, as above.
    let seq = mem.slot_word(pos, Seq).load(Ordering::Acquire);
    if producer {
        h.prod.load(Ordering::Acquire) > pos && seq == pos
    } else {
        h.cons.load(Ordering::Acquire) > pos && seq & !ABANDONED == pos + 1
    }
}

/// Number of messages (published or in flight) between the cursors.
pub(crate) fn len(mem: &Mem) -> u64 {
    let h = mem.header();
    // Relaxed: a snapshot for display.
    let enq = h.prod.load(Ordering::Relaxed);
    let deq = h.cons.load(Ordering::Relaxed);
    enq.saturating_sub(deq)
}
