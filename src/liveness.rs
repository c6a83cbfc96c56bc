//! Whether the process behind an endpoint slot is alive: one small trait,
//! two implementations.
//!
//! * [`Segment`] (named segments): each endpoint holds an OFD lock on its
//!   slot's byte of the file for as long as it is attached. The kernel drops
//!   the lock when the process dies (or closes the file), however it dies,
//!   so "locked" is "alive", asked with one `F_OFD_GETLK`.
//! * [`Local`] (heap rings): every endpoint lives in this process, so an
//!   attached slot is a live endpoint; a test that simulates a crash marks
//!   the slot [`CRASHED`] instead of losing a lock.
//!
//! The state word (`layout::EP_*`) says what an endpoint declared; liveness
//! says whether it can still act on it. Everything else (`endpoint`,
//! `inspect`) asks through this trait.

use crate::layout::{EP_MASK, EndpointSlot, LOCK_ENDPOINT_BASE, ep_attached};
use crate::shm::{Lock, Segment};
use crate::sync::Ordering;

/// Heap rings only: the state of a slot whose endpoint a test declared
/// crashed (there is no process to kill and no lock to lose).
pub(crate) const CRASHED: u32 = 3;

/// Marks of life of the endpoints of one ring.
pub(crate) trait Liveness {
    /// Takes slot `i`'s mark of life for our endpoint; `false` if a live
    /// endpoint holds it.
    fn hold(&self, i: usize) -> bool;
    /// Gives slot `i`'s mark of life up (detach, or a failed attach).
    fn release(&self, i: usize);
    /// Whether the endpoint in slot `i` (state word `st`, just loaded) is
    /// alive. Segments: one syscall; our own slot reads as dead.
    fn alive(&self, i: usize, st: u32) -> bool;
    /// Whether `st` itself says its endpoint died (no probe).
    fn marked_dead(&self, st: u32) -> bool;
    /// Leaves slot `i` as a dying process would: attached, not alive.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    fn crash(&self, i: usize, slot: &EndpointSlot, st: u32);
}

impl Liveness for Segment {
    fn hold(&self, i: usize) -> bool {
        self.try_lock(LOCK_ENDPOINT_BASE + i as u64, Lock::Exclusive)
            .unwrap_or(false)
    }
    fn release(&self, i: usize) {
        self.unlock(LOCK_ENDPOINT_BASE + i as u64);
    }
    fn alive(&self, i: usize, _st: u32) -> bool {
        self.is_locked(LOCK_ENDPOINT_BASE + i as u64)
    }
    fn marked_dead(&self, _st: u32) -> bool {
        false
    }
    fn crash(&self, i: usize, _slot: &EndpointSlot, _st: u32) {
        // Closing the descriptor would do the same.
        self.release(i);
    }
}

/// The liveness of heap rings: an attached slot is alive.
pub(crate) struct Local;

impl Liveness for Local {
    fn hold(&self, _i: usize) -> bool {
        // No locks: the attach CAS on the state word decides.
        true
    }
    fn release(&self, _i: usize) {}
    fn alive(&self, _i: usize, st: u32) -> bool {
        ep_attached(st)
    }
    fn marked_dead(&self, st: u32) -> bool {
        st & EP_MASK == CRASHED
    }
    fn crash(&self, _i: usize, slot: &EndpointSlot, st: u32) {
        // Release: as a detach would (peers load the state with Acquire).
        slot.state
            .store((st & !EP_MASK) | CRASHED, Ordering::Release);
    }
}
