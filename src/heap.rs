//! The heap allocation behind heap rings (and behind the loom model of a
//! segment): zeroed, 128-byte aligned, laid out like a segment. Below both
//! `shm` (whose loom model keeps one) and `region` (which maps either).

use std::ptr::NonNull;

use crate::layout::Geometry;
#[cfg(loom)]
use crate::layout::{EndpointSlot, Header};
#[cfg(loom)]
use crate::sync::{AtomicU32, AtomicU64};

/// A zeroed, 128-byte aligned heap allocation laid out like a segment.
///
/// Outside Miri it is an anonymous private mapping: the kernel hands out
/// zero pages lazily, so a large ring costs address space, not memory, until
/// it is written (`alloc_zeroed` would memset over-aligned allocations).
pub(crate) struct HeapBuf {
    #[cfg(not(loom))]
    pub(crate) base: NonNull<u8>,
    #[cfg(all(not(loom), miri))]
    layout: std::alloc::Layout,
    #[cfg(all(not(loom), not(miri)))]
    _map: memmap2::MmapMut,
    #[cfg(loom)]
    pub(crate) loom: LoomMem,
}

// SAFETY: the buffer is only reached through atomics and through grants whose
// exclusivity the protocols establish; see `Mem`.
unsafe impl Send for HeapBuf {}
// SAFETY: as above.
unsafe impl Sync for HeapBuf {}

impl HeapBuf {
    #[cfg(all(not(loom), miri))]
    pub(crate) fn new(geo: Geometry) -> HeapBuf {
        let size = geo.total_size().expect("geometry validated by Options") as usize;
        let layout = std::alloc::Layout::from_size_align(size, crate::layout::LINE)
            .expect("size validated by Options");
        // SAFETY: the layout has a non-zero size (it contains a header).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        HeapBuf { base, layout }
    }

    #[cfg(all(not(loom), not(miri)))]
    pub(crate) fn new(geo: Geometry) -> HeapBuf {
        let size = geo.total_size().expect("geometry validated by Options") as usize;
        let mut map = memmap2::MmapMut::map_anon(size)
            .unwrap_or_else(|e| panic!("cannot reserve {size} bytes for a heap ring: {e}"));
        let base = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
        HeapBuf { base, _map: map }
    }

    #[cfg(loom)]
    pub(crate) fn new(geo: Geometry) -> HeapBuf {
        HeapBuf {
            loom: LoomMem::new(geo),
        }
    }
}

#[cfg(loom)]
impl HeapBuf {
    /// The header (the loom segment model reads it before a `Mem` exists).
    pub(crate) fn header(&self) -> &Header {
        &self.loom.header
    }
}

#[cfg(all(not(loom), miri))]
impl Drop for HeapBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

/// Under loom, atomics are tracked objects rather than plain words, so the
/// heap region keeps the header, the endpoint table and the data area's words
/// as loom atomics, and the payload bytes in a separate buffer at the same
/// offsets. The protocols cannot tell the difference: they use `Mem`.
#[cfg(loom)]
pub(crate) struct LoomMem {
    pub(crate) header: Header,
    pub(crate) endpoints: Box<[EndpointSlot]>,
    pub(crate) words: Box<[AtomicU64]>,
    pub(crate) bytes: NonNull<u8>,
    pub(crate) len: usize,
}

#[cfg(loom)]
impl LoomMem {
    fn new(geo: Geometry) -> LoomMem {
        use crate::layout::{Meta, WakeWord};
        use crossbeam_utils::CachePadded;
        let a64 = || AtomicU64::new(0);
        let a32 = || AtomicU32::new(0);
        let wake = || {
            CachePadded::new(WakeWord {
                state: a64(),
                // SAFETY: sem_t is a plain C type; zero is a valid placeholder
                // (never used under loom).
                sem: crate::sync::RawCell::new(unsafe { std::mem::zeroed() }),
                kernel: loom::sync::Mutex::new(0),
                kernel_cv: loom::sync::Condvar::new(),
            })
        };
        let header = Header {
            meta: CachePadded::new(Meta {
                magic: a64(),
                version: a32(),
                kind: a32(),
                layout_hash: a64(),
                state: a32(),
                wake: a32(),
                capacity: a64(),
                slot_size: a32(),
                max_producers: a32(),
                max_consumers: a32(),
                poisoned: a32(),
                total_size: a64(),
                creator_pid: a32(),
                mode: a32(),
                type_size: a32(),
                type_align: a32(),
                type_fingerprint: a64(),
                producers_died: a32(),
                _reserved0: a32(),
            }),
            prod: CachePadded::new(a64()),
            cons: CachePadded::new(a64()),
            not_empty: wake(),
            not_full: wake(),
        };
        let endpoints = (0..geo.endpoints())
            .map(|_| EndpointSlot {
                state: a32(),
                pid: a32(),
                claiming: a64(),
            })
            .collect();
        let len = geo.data_len() as usize;
        let words = (0..len / 8).map(|_| a64()).collect();
        let layout = std::alloc::Layout::from_size_align(len.max(1), 8).unwrap();
        // SAFETY: non-zero size.
        let bytes = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
        LoomMem {
            header,
            endpoints,
            words,
            bytes,
            len,
        }
    }
}

#[cfg(loom)]
impl Drop for LoomMem {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len.max(1), 8).unwrap();
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.bytes.as_ptr(), layout) }
    }
}
