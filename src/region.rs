//! Where a ring's bytes live: a heap allocation (threads, tests, loom, Miri,
//! fuzzing) or a named shared-memory segment. The protocols see only [`Mem`],
//! so they run unchanged on both.

use std::ptr::NonNull;
use std::sync::Arc;

pub(crate) use crate::heap::HeapBuf;
#[cfg(loom)]
use crate::heap::LoomMem;
use crate::layout::{EndpointSlot, Geometry, Header};
use crate::liveness::{Liveness, Local};
use crate::shm::Segment;
#[cfg(loom)]
use crate::sync::AtomicU32;
use crate::sync::AtomicU64;

/// Memory for one endpoint's view of a ring.
pub(crate) struct Mem {
    geo: Geometry,
    /// `geo.data_offset()` and `geo.data_len()`, computed once: the hot path
    /// reaches every word through them.
    data_off: usize,
    data_len: u64,
    #[cfg(not(loom))]
    base: NonNull<u8>,
    /// `base + data_off`: the first byte of the data area.
    #[cfg(not(loom))]
    data: NonNull<u8>,
    /// `data_len - 7` (0 if smaller): word offsets below it are in the data
    /// area (a header-only view has none).
    #[cfg(not(loom))]
    words_end: u64,
    /// `geo.endpoints()`, computed once (checked at every endpoint access).
    #[cfg(not(loom))]
    endpoints: usize,
    backing: Arc<Backing>,
    /// Endpoints are `Send` but not `Sync`: each keeps private cursor caches.
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

/// The bytes behind a [`Mem`]: shared by the endpoints of a heap ring, and
/// by an endpoint and its [`Interrupter`](crate::Interrupter)s (which must
/// keep the wake words mapped).
pub(crate) enum Backing {
    Heap(HeapBuf),
    Shm(Segment),
}

impl Backing {
    /// The header.
    #[cfg(not(loom))]
    pub(crate) fn header(&self) -> &Header {
        match self {
            // SAFETY: the allocation starts with a header, 128-aligned; every
            // field is an atomic (or a RawCell never read by Rust), so a
            // shared reference is sound while others write them; it lives as
            // long as `self`.
            Backing::Heap(b) => unsafe { b.base.cast::<Header>().as_ref() },
            Backing::Shm(s) => s.header(),
        }
    }

    #[cfg(loom)]
    pub(crate) fn header(&self) -> &Header {
        match self {
            Backing::Heap(b) => &b.loom.header,
            Backing::Shm(s) => &s.heap().loom.header,
        }
    }
}

// SAFETY: `Mem` only holds pointers into an allocation or a mapping that it
// keeps alive itself (the Arc or the Segment), and all access to the shared
// bytes goes through atomics or through grants whose exclusivity the ring
// protocols establish; nothing is tied to the creating thread.
unsafe impl Send for Mem {}

impl Mem {
    /// A fresh zeroed heap region for `geo`.
    pub(crate) fn heap(geo: Geometry) -> Mem {
        Mem::from_backing(Arc::new(Backing::Heap(HeapBuf::new(geo))), geo)
    }

    /// A heap region holding a copy of `image` (a whole segment's bytes, as a
    /// peer may have left them), viewed with geometry `geo`. For fuzzing the
    /// open path without files.
    ///
    /// # Panics
    /// If `geo` needs more bytes than `image` has.
    #[cfg(not(loom))]
    #[allow(dead_code)]
    pub(crate) fn from_image(image: &[u8], geo: Geometry) -> Mem {
        let need = geo.total_size().expect("validated geometry") as usize;
        assert!(need <= image.len());
        let buf = HeapBuf::new(geo);
        // SAFETY: `buf` has `need` bytes (its layout is `geo.total_size()`),
        // nobody else sees it yet, and `image` has at least `need` bytes.
        unsafe { std::ptr::copy_nonoverlapping(image.as_ptr(), buf.base.as_ptr(), need) };
        Mem::from_backing(Arc::new(Backing::Heap(buf)), geo)
    }

    /// Stores `v` at byte `off` of the whole region (header, table or data)
    /// with a Relaxed atomic store: a simulated peer scribbling on the
    /// segment. For fuzzing and tests.
    ///
    /// # Panics
    /// If `off` is not 8-aligned or out of bounds.
    #[cfg(not(loom))]
    #[allow(dead_code)]
    pub(crate) fn poke(&self, off: usize, v: u64) {
        let total = self.geo.total_size().unwrap_or(0) as usize;
        assert!(off % 8 == 0 && off + 8 <= total);
        // SAFETY: in bounds and 8-aligned (checked above; the base is
        // 128-aligned); an atomic store is sound against concurrent access.
        let a = unsafe { self.base.add(off).cast::<AtomicU64>().as_ref() };
        // Relaxed: a scribbling peer promises no ordering.
        a.store(v, crate::sync::Ordering::Relaxed);
    }

    /// Another view of the same heap region (the other endpoint).
    pub(crate) fn share(&self) -> Option<Mem> {
        match &*self.backing {
            Backing::Heap(_) => Some(Mem::from_backing(self.backing.clone(), self.geo)),
            Backing::Shm(_) => None,
        }
    }

    /// What keeps the bytes alive (for interrupters).
    pub(crate) fn backing(&self) -> Arc<Backing> {
        self.backing.clone()
    }

    fn from_backing(backing: Arc<Backing>, geo: Geometry) -> Mem {
        // The SPSC ring relies on this (`ring::spsc::Data::of`): a data area
        // of `capacity` bytes (SPSC), or of `capacity` slots (MPMC).
        assert!(geo.capacity <= geo.data_len());
        #[cfg(not(loom))]
        let base = match &*backing {
            Backing::Heap(b) => b.base,
            Backing::Shm(s) => s.ptr(),
        };
        #[cfg(not(loom))]
        // SAFETY: the data area starts inside the region, which holds
        // `geo.total_size()` bytes from `base` (checked by the callers).
        let data = unsafe { base.add(geo.data_offset()) };
        Mem {
            geo,
            data_off: geo.data_offset(),
            data_len: geo.data_len(),
            #[cfg(not(loom))]
            base,
            #[cfg(not(loom))]
            data,
            #[cfg(not(loom))]
            words_end: geo.data_len().saturating_sub(7),
            #[cfg(not(loom))]
            endpoints: geo.endpoints(),
            backing,
            _not_sync: std::marker::PhantomData,
        }
    }

    /// A view of a mapped segment. `geo` must have been validated against the
    /// segment's size (`geo.total_size() <= seg.len()`).
    pub(crate) fn shm(seg: Segment, geo: Geometry) -> Mem {
        assert!(geo.total_size().is_some_and(|t| t <= seg.len() as u64));
        Mem::from_backing(Arc::new(Backing::Shm(seg)), geo)
    }

    /// Byte offset in the region of the data-area word at `off` (for error
    /// reports).
    pub(crate) fn at_data(&self, off: u64) -> Option<u64> {
        Some(self.data_off as u64 + off)
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The segment, while this is the only view of it (a fresh creation).
    pub(crate) fn segment_mut(&mut self) -> Option<&mut Segment> {
        match Arc::get_mut(&mut self.backing)? {
            Backing::Shm(s) => Some(s),
            Backing::Heap(_) => None,
        }
    }

    pub(crate) fn segment(&self) -> Option<&Segment> {
        match &*self.backing {
            Backing::Shm(s) => Some(s),
            Backing::Heap(_) => None,
        }
    }

    /// The header.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: `base` points to at least `geo.total_size()` bytes, aligned to
        // 128 (page-aligned mapping or 128-aligned allocation), kept alive by
        // `backing`. Every field of `Header` is an atomic (or a RawCell never
        // read by Rust), so a shared reference is sound even though other
        // processes write those fields concurrently.
        unsafe { self.base.cast::<Header>().as_ref() }
    }

    /// Under loom, heap and (fake) segment regions alike are a `LoomMem`.
    #[cfg(loom)]
    fn loom(&self) -> &LoomMem {
        match &*self.backing {
            Backing::Heap(b) => &b.loom,
            Backing::Shm(s) => &s.heap().loom,
        }
    }

    #[cfg(loom)]
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        &self.loom().header
    }

    /// Endpoint slot `i`.
    ///
    /// # Panics
    /// If `i` is not below the geometry's endpoint count (a bug in shmq, never
    /// a consequence of segment contents).
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn endpoint(&self, i: usize) -> &EndpointSlot {
        assert!(i < self.endpoints);
        // SAFETY: the table lies inside the region (see `Geometry`), slots are
        // 16-byte aligned and made only of atomics.
        unsafe {
            self.base
                .add(self.geo.table_offset() + i * size_of::<EndpointSlot>())
                .cast::<EndpointSlot>()
                .as_ref()
        }
    }

    #[cfg(loom)]
    pub(crate) fn endpoint(&self, i: usize) -> &EndpointSlot {
        &self.loom().endpoints[i]
    }

    /// The 8-byte word at byte `off` of the data area, as an atomic.
    ///
    /// # Panics
    /// If `off` is not 8-aligned or the word is not inside the data area.
    /// Callers validate peer-supplied offsets first; this is a last line of
    /// defence against shmq bugs.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn word(&self, off: u64) -> &AtomicU64 {
        assert!(off % 8 == 0);
        // SAFETY: in bounds (`word_ptr` checks) and 8-aligned (checked above;
        // the data area is 128-aligned); atomics may be accessed while peers
        // access them too; the region outlives `&self`.
        unsafe { &*self.word_ptr(off).cast::<AtomicU64>() }
    }

    #[cfg(loom)]
    pub(crate) fn word(&self, off: u64) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.data_len);
        &self.loom().words[(off / 8) as usize]
    }

    /// The 8-byte word at byte `off` of the data area, as a pointer, with one
    /// comparison (`off + 8 <= data_len`, as `off < data_len - 7`, computed
    /// once).
    ///
    /// # Panics
    /// If the word is not inside the data area.
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn word_ptr(&self, off: u64) -> *mut u8 {
        assert!(off < self.words_end);
        // SAFETY: `off + 8 <= data_len`, checked above.
        unsafe { self.data.as_ptr().add(off as usize) }
    }

    /// Pointer to `len` payload bytes at byte `off` of the data area.
    ///
    /// # Panics
    /// If the range is not inside the data area.
    #[inline]
    pub(crate) fn bytes(&self, off: u64, len: usize) -> *mut u8 {
        assert!(
            off.checked_add(len as u64)
                .is_some_and(|e| e <= self.data_len)
        );
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds, checked above.
            unsafe { self.data.as_ptr().add(off as usize) }
        }
        #[cfg(loom)]
        // SAFETY: in bounds of the loom byte buffer, checked above.
        unsafe {
            self.loom().bytes.as_ptr().add(off as usize)
        }
    }

    /// The first byte of the data area (which holds at least
    /// `geometry().capacity` bytes: see `from_backing`).
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn data_ptr(&self) -> *mut u8 {
        self.data.as_ptr()
    }

    /// Who says whether an endpoint slot's process is alive.
    pub(crate) fn liveness(&self) -> &dyn Liveness {
        match &*self.backing {
            Backing::Heap(_) => &Local,
            Backing::Shm(s) => s,
        }
    }

    /// Whether endpoint slot `i`'s endpoint is alive (a syscall on
    /// segments; our own slot reads as dead there).
    pub(crate) fn endpoint_alive(&self, i: usize) -> bool {
        // Relaxed: a liveness hint; callers re-check cursors with their own
        // orderings afterwards.
        let st = self.endpoint(i).state.load(crate::sync::Ordering::Relaxed);
        self.liveness().alive(i, st)
    }

    pub(crate) fn is_heap(&self) -> bool {
        matches!(*self.backing, Backing::Heap(_))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::layout::Kind;

    /// A header-only view (no table, no data: what `acquire::open_image`
    /// reads a header through) is built without panicking, and has no data
    /// word to hand out. (Found by the fuzzer's regression input: building
    /// it used to assert a data area of at least one word.)
    #[test]
    fn header_only_view_has_no_data_words() {
        let geo = Geometry {
            kind: Kind::Spsc,
            capacity: 0,
            slot_size: 0,
            max_producers: 0,
            max_consumers: 0,
        };
        let image = vec![0u8; size_of::<Header>()];
        let m = Mem::from_image(&image, geo);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.word_ptr(0)));
        assert!(r.is_err(), "a word of an empty data area");
    }
}
