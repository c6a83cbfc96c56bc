//! Typed channels of plain-old-data values, over either ring.
//!
//! A [`Sender<T, K>`] and a [`Receiver<T, K>`] carry values of one
//! [`bytemuck::Pod`] type `T` (no pointers, no padding, any bit pattern
//! valid) through an [`Spsc`] (the default) or an [`Mpmc`] ring, in one
//! process ([`channel`]) or across processes (named segments).
//!
//! * Zero-copy send: [`Sender::loan`] hands out a [`Loan`] that derefs to a
//!   `T` in the ring; fill it in place, then [`Loan::send`].
//! * Copying send: [`Sender::send`].
//! * Zero-copy receive: [`Receiver::recv`] returns a [`ReadGrant`] that
//!   derefs to the `T` in the ring (trusted peers).
//! * Copying receive: [`Receiver::recv_into`] copies the value out without
//!   a reference to ring memory (any peer). The same names as the byte
//!   API: `recv` is a grant, `recv_into` a copy, on every ring.
//!
//! ```
//! use shmq::typed::{self, Sender, Receiver};
//!
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Tick { price: u64, qty: u32, side: u32 }
//!
//! let (mut tx, mut rx): (Sender<Tick>, Receiver<Tick>) =
//!     typed::channel(&shmq::Options::new())?;
//! let mut loan = tx.loan()?;          // a Tick inside the ring
//! loan.price = 101;
//! loan.qty = 5;
//! loan.side = 1;
//! loan.send();
//! tx.send(Tick { price: 102, qty: 1, side: 0 })?; // or copy one in
//! let mut q = Tick { price: 0, qty: 0, side: 0 };
//! rx.recv_into(&mut q)?; // copied out
//! assert_eq!(q.price, 101);
//! assert_eq!(rx.recv()?.price, 102); // read in place
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The element type is checked
//! The creator stores the size, alignment and a fingerprint of `T` in the
//! segment header; opening with another type fails with
//! [`OpenError::TypeMismatch`], and opening a typed segment with the raw
//! byte API (or the other way round) fails the same way. The fingerprint
//! ([`fingerprint`]) hashes [`std::any::type_name`] with the size and the
//! alignment, so:
//! * both sides must name the same type: a struct with the same fields under
//!   another name or path is a different type here;
//! * `type_name` is not guaranteed stable across compiler versions: build
//!   both sides with the same toolchain, or expect a (safe) mismatch;
//! * a change to the fields that keeps the name, size and alignment (say,
//!   two `u32` fields swapped) is not detected.
//!
//! # Alignment
//! Messages start 8-byte aligned in the ring. For `T` with an alignment up
//! to 8, loans and read grants point into the ring; for larger alignments
//! they hold an aligned copy, which [`Loan::send`] copies in and
//! [`ReadGrant`] copied out. Either way the code you write is the same.
//!
//! # A misbehaving peer
//! As with the byte rings, a peer that rewrites a message while you read it
//! in place is not defended against; [`Receiver::recv`] copies the value
//! out first. A message whose length is not `size_of::<T>()` poisons the
//! receiver with [`Error::Corrupted`].

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;

use crate::endpoint::Front;
use crate::error::{Error, OpenError};
use crate::header::TypeInfo;
use crate::notify;
use crate::options::Options;

/// Marker: a typed channel over an SPSC ring (one sender, one receiver;
/// each value takes `size_of::<T>()` rounded up to 8, plus an 8-byte record
/// header, of the ring's `capacity` bytes).
#[derive(Clone, Copy, Debug, Default)]
pub struct Spsc;

/// Marker: a typed channel over an MPMC ring (many senders and receivers,
/// each value taken by one receiver; one slot per value, sized for `T`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Mpmc;

/// Which ring a typed channel uses: [`Spsc`] or [`Mpmc`]. Sealed.
pub trait Ring: sealed::Sealed {}
impl Ring for Spsc {}
impl Ring for Mpmc {}

mod sealed {
    use super::*;

    pub use crate::acquire::How;

    pub use crate::notify::Wait;

    /// The element type as stored in the header.
    #[derive(Clone, Copy)]
    pub struct Elem(pub(crate) TypeInfo);

    /// The per-ring plumbing behind [`Ring`]: not nameable outside the crate.
    // The bounds name crate-internal traits: this trait is sealed (its
    // module is private), so nobody outside can see or implement it.
    #[allow(private_bounds)]
    pub trait Sealed: Sized + 'static {
        type Producer: Send + Front;
        type Consumer: Send + Front;
        type WriteGrant<'a>: DerefMut<Target = [u8]>;
        type ReadGrant<'a>: Deref<Target = [u8]>;
        /// Adjusts (MPMC: slot size) and checks the options for `ty`.
        fn options(opts: &Options, ty: Elem) -> Result<Options, OpenError>;
        fn reserve(
            p: &mut Self::Producer,
            len: usize,
            w: Wait,
        ) -> Result<Self::WriteGrant<'_>, Error>;
        fn commit(g: Self::WriteGrant<'_>, n: usize);
        /// Copies `bytes` into the ring as one message (the byte API's
        /// `send` and friends, with their quick path).
        fn send_copy(p: &mut Self::Producer, w: Wait, bytes: &[u8]) -> Result<(), Error>;
        fn recv(c: &mut Self::Consumer, w: Wait) -> Result<Self::ReadGrant<'_>, Error>;
        /// Copies the next message into `buf` without a reference to the
        /// ring (`recv_into` and friends).
        fn recv_copy(c: &mut Self::Consumer, w: Wait, buf: &mut [u8]) -> Result<usize, Error>;
    }
}

use sealed::{Elem, How, Sealed, Wait};

/// Calls the byte API's variant for `w`: `$no` without waiting, `$forever`
/// for as long as it takes, `$until` with the time left.
macro_rules! by_wait {
    ($w:expr => $no:expr, $forever:expr, |$d:ident| $until:expr) => {
        match $w {
            Wait::No => $no,
            Wait::Forever => $forever,
            Wait::Until(t) => {
                let $d = t.saturating_duration_since(std::time::Instant::now());
                $until
            }
        }
    };
}

/// The items of [`Sealed`] that read the same for both rings; `options` and
/// `reserve` differ and are given by each impl.
macro_rules! sealed_impl {
    ($marker:ident, $ring:ident, { $($own:tt)* }) => {
        impl Sealed for $marker {
            type Producer = crate::$ring::Producer;
            type Consumer = crate::$ring::Consumer;
            type WriteGrant<'a> = crate::$ring::WriteGrant<'a>;
            type ReadGrant<'a> = crate::$ring::ReadGrant<'a>;

            $($own)*

            #[inline]
            fn commit(g: Self::WriteGrant<'_>, n: usize) {
                g.commit(n);
            }

            #[inline]
            fn send_copy(p: &mut Self::Producer, w: Wait, bytes: &[u8]) -> Result<(), Error> {
                by_wait!(w => p.try_send(bytes), p.send(bytes), |d| p.send_timeout(bytes, d))
            }

            #[inline]
            fn recv(c: &mut Self::Consumer, w: Wait) -> Result<Self::ReadGrant<'_>, Error> {
                by_wait!(w => c.try_recv(), c.recv(), |d| c.recv_timeout(d))
            }

            #[inline]
            fn recv_copy(c: &mut Self::Consumer, w: Wait, buf: &mut [u8]) -> Result<usize, Error> {
                by_wait!(w => c.try_recv_into(buf), c.recv_into(buf), |d| c.recv_into_timeout(buf, d))
            }
        }
    };
}

sealed_impl!(Spsc, spsc, {
    fn options(opts: &Options, Elem(ty): Elem) -> Result<Options, OpenError> {
        let cap = opts.capacity;
        let max = (cap / 2).saturating_sub(8);
        if cap.is_power_of_two() && max < u64::from(ty.size) {
            let need = (2 * (u64::from(ty.size) + 8)).next_power_of_two().max(64);
            return Err(OpenError::InvalidOptions(format!(
                "capacity {cap} cannot hold elements of {} bytes (the largest SPSC message \
                 is capacity / 2 - 8 bytes); use a capacity of at least {need}",
                ty.size
            )));
        }
        Ok(opts.clone())
    }

    #[inline]
    fn reserve(p: &mut Self::Producer, len: usize, w: Wait) -> Result<Self::WriteGrant<'_>, Error> {
        by_wait!(w => p.try_reserve(len), p.reserve(len), |d| p.reserve_timeout(len, d))
    }
});

sealed_impl!(Mpmc, mpmc, {
    fn options(opts: &Options, Elem(ty): Elem) -> Result<Options, OpenError> {
        // One value per slot: the payload rounded up to 8 bytes (at least 8)
        // plus the 16-byte slot header.
        let payload = (u64::from(ty.size).max(8) + 7) & !7;
        let slot = payload + 16;
        if opts.slot_size_set() && opts.slot_size != slot {
            return Err(OpenError::InvalidOptions(format!(
                "slot_size {} is set, but a typed MPMC ring derives it from the element \
                 type ({slot} bytes for {}-byte elements); leave slot_size unset",
                opts.slot_size, ty.size
            )));
        }
        Ok(opts.clone().slot_size(slot as usize))
    }

    #[inline]
    fn reserve(
        p: &mut Self::Producer,
        _len: usize,
        w: Wait,
    ) -> Result<Self::WriteGrant<'_>, Error> {
        by_wait!(w => p.try_reserve(), p.reserve(), |d| p.reserve_timeout(d))
    }
});

/// The fingerprint stored in a typed segment's header for element type `T`:
/// 64-bit FNV-1a of [`std::any::type_name::<T>()`](std::any::type_name),
/// then its size and alignment (little-endian `u64`s). Stable across
/// processes built by the same toolchain; see the [module docs](self) for
/// what it does not detect.
///
/// ```
/// use shmq::typed::fingerprint;
/// assert_eq!(fingerprint::<u64>(), fingerprint::<u64>());
/// assert_ne!(fingerprint::<u64>(), fingerprint::<i64>());
/// assert_ne!(fingerprint::<[u8; 4]>(), fingerprint::<[u8; 8]>());
/// ```
pub fn fingerprint<T: 'static>() -> u64 {
    let size = size_of::<T>() as u64;
    let align = align_of::<T>() as u64;
    std::any::type_name::<T>()
        .bytes()
        .chain(size.to_le_bytes())
        .chain(align.to_le_bytes())
        .fold(crate::layout::FNV_OFFSET, crate::layout::fnv_byte)
}

/// The header's description of `T`.
fn type_info<T: Pod>() -> Result<TypeInfo, OpenError> {
    let size = u32::try_from(size_of::<T>()).map_err(|_| {
        OpenError::InvalidOptions(format!(
            "element type {} is {} bytes; typed channels carry at most 4 GiB per value",
            std::any::type_name::<T>(),
            size_of::<T>()
        ))
    })?;
    Ok(TypeInfo {
        size,
        // Alignments are powers of two far below 2^32.
        align: align_of::<T>() as u32,
        fingerprint: fingerprint::<T>(),
    })
}

/// Creates an in-process typed channel on the heap (for threads and tests).
///
/// For [`Mpmc`], the slot size is derived from `T` (a different
/// `slot_size` option is an error); for [`Spsc`], `capacity` must hold at
/// least one value.
///
/// # Errors
/// [`OpenError::InvalidOptions`] if the ring cannot be built or cannot hold
/// a `T`.
///
/// # Examples
/// ```
/// use shmq::typed::{self, Mpmc};
/// let (mut tx, mut rx) = typed::channel::<[u32; 4], Mpmc>(&shmq::Options::new().slots(16))?;
/// tx.send([1, 2, 3, 4])?;
/// assert_eq!(*rx.recv()?, [1, 2, 3, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
// The pair is the clearest return type; a type alias would only hide it.
#[allow(clippy::type_complexity)]
pub fn channel<T: Pod, K: Ring>(
    opts: &Options,
) -> Result<(Sender<T, K>, Receiver<T, K>), OpenError> {
    let ty = type_info::<T>()?;
    let (p, c) =
        crate::endpoint::heap_pair::<K::Producer, K::Consumer>(&K::options(opts, Elem(ty))?, ty)?;
    Ok((Sender::wrap(p), Receiver::wrap(c)))
}

/// The sending end of a typed channel of `T` over ring `K` ([`Spsc`] by
/// default). `Send`, not `Sync`.
///
/// ```
/// use shmq::typed::{Receiver, Sender};
/// let name = format!("doc-typed-sender-{}", std::process::id());
/// let opts = shmq::Options::new();
/// // Usually in two processes; whoever comes first creates the segment.
/// let mut tx = Sender::<[f32; 3]>::open_or_create(&name, &opts)?;
/// let mut rx = Receiver::<[f32; 3]>::open_or_create(&name, &opts)?;
/// tx.send([1.0, 2.0, 3.0])?;
/// assert_eq!(*rx.recv()?, [1.0, 2.0, 3.0]);
/// // Another type on the same segment is refused.
/// assert!(matches!(
///     Receiver::<[u32; 3]>::open(&name, &opts),
///     Err(shmq::OpenError::TypeMismatch { .. })
/// ));
/// # drop((tx, rx));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sender<T, K: Ring = Spsc> {
    inner: K::Producer,
    _t: PhantomData<fn(T) -> T>,
}

/// The receiving end of a typed channel of `T` over ring `K` ([`Spsc`] by
/// default). `Send`, not `Sync`.
pub struct Receiver<T, K: Ring = Spsc> {
    inner: K::Consumer,
    poisoned: Option<Error>,
    _t: PhantomData<fn(T) -> T>,
}

static_assertions::assert_impl_all!(Sender<u64>: Send);
static_assertions::assert_not_impl_any!(Sender<u64>: Sync);
static_assertions::assert_impl_all!(Receiver<u64, Mpmc>: Send);
static_assertions::assert_not_impl_any!(Receiver<u64, Mpmc>: Sync);

/// Wrong-sized messages: only a misbehaving peer sends them.
/// A message whose length is not the element size: only a misbehaving peer
/// sends it.
fn wrong_size(len: usize) -> Error {
    Error::Corrupted(crate::error::Corruption::new(
        "a message's length differs from the element size",
        None,
        len as u64,
    ))
}

macro_rules! typed_ctors {
    ($end:literal, $make:ident, $v:literal, $waits:literal, |$inner:ident| $wrap:expr) => {
        fn wrap($inner: K::$make) -> Self {
            $wrap
        }

        /// The segment name (`None` for heap channels).
        ///
        /// ```
        /// let (tx, rx) = shmq::typed::channel::<u64, shmq::typed::Spsc>(&shmq::Options::new())?;
        #[doc = concat!("assert_eq!(", $v, ".name(), None);")]
        /// # Ok::<(), shmq::OpenError>(())
        /// ```
        pub fn name(&self) -> Option<&str> {
            self.inner.endpoint().name.as_deref()
        }

        /// A handle that makes this endpoint's blocking calls return
        /// [`Error::Interrupted`] (see [`Interrupter`](crate::Interrupter)).
        ///
        /// ```
        /// let (mut tx, mut rx) = shmq::typed::channel::<u64, shmq::typed::Mpmc>(&shmq::Options::new().slots(2))?;
        #[doc = concat!($v, ".interrupter().interrupt();")]
        /// tx.send(1)?;
        /// tx.send(2)?;
        #[doc = concat!("// The next call of `", $v, "` that has to wait returns `Interrupted`:")]
        #[doc = concat!("let r = ", $waits, ";")]
        /// assert_eq!(r.err(), Some(shmq::Error::Interrupted));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn interrupter(&self) -> crate::Interrupter {
            self.inner.endpoint().at.interrupter()
        }

        /// Creates the named segment for values of `T` (it must not exist)
        /// and attaches.
        ///
        /// For [`Mpmc`], the slot size is derived from `T`; a `slot_size`
        /// option that differs is an [`OpenError::InvalidOptions`].
        ///
        /// # Errors
        #[doc = concat!("As the ", $end, "'s `create`, plus")]
        /// [`OpenError::InvalidOptions`] when an SPSC `capacity` cannot
        /// hold a `T`.
        pub fn create(name: &str, opts: &Options) -> Result<Self, OpenError> {
            Self::make(How::Create, name, opts)
        }

        /// Opens an existing segment for values of `T` and attaches.
        ///
        /// # Errors
        #[doc = concat!("As the ", $end, "'s `open`, plus")]
        /// [`OpenError::TypeMismatch`] when the segment carries another
        /// type (or raw bytes).
        pub fn open(name: &str, opts: &Options) -> Result<Self, OpenError> {
            Self::make(How::Open, name, opts)
        }

        /// Opens the segment, creating it first if it does not exist
        /// (race-free).
        ///
        /// # Errors
        /// As [`create`](Self::create) and [`open`](Self::open).
        pub fn open_or_create(name: &str, opts: &Options) -> Result<Self, OpenError> {
            Self::make(How::OpenOrCreate, name, opts)
        }

        fn make(how: How, name: &str, opts: &Options) -> Result<Self, OpenError> {
            let ty = type_info::<T>()?;
            let opts = match how {
                How::Open => opts.clone(),
                How::Create | How::OpenOrCreate => K::options(opts, Elem(ty))?,
            };
            let end: K::$make = crate::endpoint::Endpoint::connect(how, name, &opts, ty)
                .map(Front::from_endpoint)?;
            // The header's element type matched, but its geometry is the
            // peer's word too: a ring whose largest message cannot hold a
            // `T` is inconsistent (and loans would not fit).
            let max = end.max_len();
            if max < size_of::<T>() {
                return Err(OpenError::Corrupted {
                    name: name.to_owned(),
                    detail: format!(
                        "its largest message is {max} bytes, less than its element type's {}",
                        size_of::<T>()
                    ),
                });
            }
            Ok(Self::wrap(end))
        }
    };
}

impl<T: Pod, K: Ring> Sender<T, K> {
    typed_ctors!("ring's producer", Producer, "tx", "tx.send(3)", |inner| {
        Sender {
            inner,
            _t: PhantomData,
        }
    });

    #[inline]
    fn lend(&mut self, w: Wait) -> Result<Loan<'_, T, K>, Error> {
        let grant = K::reserve(&mut self.inner, size_of::<T>(), w)?;
        let in_place = bytemuck::try_from_bytes::<T>(&grant[..size_of::<T>()]).is_ok();
        Ok(Loan {
            grant,
            staged: (!in_place).then(T::zeroed),
        })
    }

    notify::waiting_variants! {
        /// Room for one value in the ring, waiting while the ring is full.
        /// Write it through the [`Loan`] (it starts with unspecified contents:
        /// set every field), then [`Loan::send`] it.
        ///
        /// # Errors
        /// `Disconnected`, `PeerDied` (SPSC: the receiver's process died),
        /// `Corrupted`.
        ///
        /// # Examples
        /// ```
        /// let (mut tx, mut rx) = shmq::typed::channel::<u64, shmq::typed::Spsc>(&shmq::Options::new())?;
        /// let mut v = tx.loan()?;
        /// *v = 7;
        /// v.send();
        /// assert_eq!(*rx.recv()?, 7);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        fn loan / try_loan / loan_timeout () -> Result<Loan<'_, T, K>, Error>,
        |s, w| s.lend(w)
    }

    notify::waiting_variants! {
        /// Copies `value` into the ring, waiting for room.
        ///
        /// ```
        /// let (mut tx, mut rx) = shmq::typed::channel::<u64, shmq::typed::Spsc>(&shmq::Options::new())?;
        /// tx.send(7)?;
        /// assert_eq!(*rx.recv()?, 7);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        ///
        /// # Errors
        /// As [`loan`](Self::loan); on error nothing was sent.
        fn send / try_send / send_timeout (value: T) -> Result<(), Error>,
        // The byte API's copying send: the same bytes at the same place as
        // a loan's, through its quick path (no grant in memory).
        |s, w| K::send_copy(&mut s.inner, w, bytemuck::bytes_of(&value))
    }
}

impl<T: Pod> Sender<T, Spsc> {
    /// The untyped producer underneath (statistics, peer liveness, …).
    pub fn raw(&self) -> &crate::spsc::Producer {
        &self.inner
    }
}

impl<T: Pod> Sender<T, Mpmc> {
    /// The untyped producer underneath (statistics, queue length, …).
    pub fn raw(&self) -> &crate::mpmc::Producer {
        &self.inner
    }

    /// Attaches another sender to the same ring (for another thread).
    ///
    /// # Errors
    /// `Busy` when the maximum of producers is attached; open errors for
    /// segments.
    pub fn try_clone(&self) -> Result<Self, OpenError> {
        Ok(Self::wrap(self.inner.try_clone()?))
    }
}

impl<T: Pod, K: Ring> Receiver<T, K> {
    typed_ctors!(
        "ring's consumer",
        Consumer,
        "rx",
        "{ drop(rx.recv()?); drop(rx.recv()?); rx.recv().map(drop) }",
        |inner| Receiver {
            inner,
            poisoned: None,
            _t: PhantomData,
        }
    );

    #[inline]
    fn take(&mut self, w: Wait) -> Result<K::ReadGrant<'_>, Error> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        let g = K::recv(&mut self.inner, w)?;
        if g.len() != size_of::<T>() {
            let e = wrong_size(g.len());
            self.poisoned = Some(e);
            return Err(e);
        }
        Ok(g)
    }

    /// The next value, copied into `dst` out of the ring through raw
    /// pointers (never a reference to ring memory): sound even if a peer
    /// rewrites it meanwhile. (On an error `dst` may hold part of a
    /// wrong-sized message.)
    #[inline]
    fn copy(&mut self, w: Wait, dst: &mut T) -> Result<(), Error> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        let bad = match K::recv_copy(&mut self.inner, w, bytemuck::bytes_of_mut(dst)) {
            Ok(n) if n == size_of::<T>() => return Ok(()),
            Ok(n) | Err(Error::BufferTooSmall { needed: n, .. }) => wrong_size(n),
            Err(e) => return Err(e),
        };
        self.poisoned = Some(bad);
        Err(bad)
    }

    #[inline]
    fn grant(&mut self, w: Wait) -> Result<ReadGrant<'_, T, K>, Error> {
        let g = self.take(w)?;
        let held = if bytemuck::try_from_bytes::<T>(&g).is_ok() {
            Held::InPlace(g)
        } else {
            Held::Copied(bytemuck::pod_read_unaligned(&g))
        };
        Ok(ReadGrant { held })
    }

    notify::waiting_variants! {
        /// The next value, read in place (zero-copy for alignments up to
        /// 8), waiting for one. Its space is freed when the grant drops.
        /// Trusted peers only, like the byte API's grants; with a peer you
        /// do not trust use [`recv_into`](Self::recv_into).
        ///
        /// ```
        /// let (mut tx, mut rx) = shmq::typed::channel::<[u64; 8], shmq::typed::Spsc>(&shmq::Options::new())?;
        /// tx.send([9; 8])?;
        /// let v = rx.recv()?;
        /// assert_eq!(v.iter().sum::<u64>(), 72);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        ///
        /// # Errors
        /// `Disconnected` (every sender left and everything was received),
        /// `PeerDied` (SPSC: the sender's process died), `Corrupted`.
        fn recv / try_recv / recv_timeout () -> Result<ReadGrant<'_, T, K>, Error>,
        |s, w| s.grant(w)
    }

    notify::waiting_variants! {
        /// Copies the next value into `dst`, waiting for one, through raw
        /// pointers (never a reference to ring memory): sound even if a
        /// peer rewrites it meanwhile.
        ///
        /// ```
        /// let (mut tx, mut rx) = shmq::typed::channel::<u64, shmq::typed::Spsc>(&shmq::Options::new())?;
        /// tx.send(7)?;
        /// let mut v = 0;
        /// rx.recv_into(&mut v)?;
        /// assert_eq!(v, 7);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        ///
        /// # Errors
        /// As [`recv`](Self::recv).
        fn recv_into / try_recv_into / recv_into_timeout (dst: &mut T) -> Result<(), Error>,
        |s, w| s.copy(w, dst)
    }
}

impl<T: Pod> Receiver<T, Spsc> {
    /// The untyped consumer underneath (statistics, peer liveness, …).
    pub fn raw(&self) -> &crate::spsc::Consumer {
        &self.inner
    }
}

impl<T: Pod> Receiver<T, Mpmc> {
    /// The untyped consumer underneath (statistics, queue length, …).
    pub fn raw(&self) -> &crate::mpmc::Consumer {
        &self.inner
    }

    /// Attaches another receiver to the same ring (for another thread).
    ///
    /// # Errors
    /// `Busy` when the maximum of consumers is attached; open errors for
    /// segments.
    pub fn try_clone(&self) -> Result<Self, OpenError> {
        Ok(Self::wrap(self.inner.try_clone()?))
    }
}

/// Room for one `T` in the ring, from [`Sender::loan`]. Derefs to the `T`;
/// [`send`](Self::send) publishes it. Dropped unsent, it sends nothing (an
/// MPMC ring skips the slot).
pub struct Loan<'a, T, K: Ring> {
    grant: K::WriteGrant<'a>,
    /// An aligned stand-in when the ring position is not aligned for `T`
    /// (alignment above 8); copied into the ring on send.
    staged: Option<T>,
}

impl<T: Pod, K: Ring> Loan<'_, T, K> {
    /// Publishes the value.
    #[inline]
    pub fn send(mut self) {
        if let Some(v) = self.staged.take() {
            self.grant[..size_of::<T>()].copy_from_slice(bytemuck::bytes_of(&v));
        }
        K::commit(self.grant, size_of::<T>());
    }
}

impl<T: Pod, K: Ring> Deref for Loan<'_, T, K> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        match &self.staged {
            Some(v) => v,
            // Checked aligned and sized when the loan was made; the grant's
            // bytes do not move.
            None => bytemuck::from_bytes(&self.grant[..size_of::<T>()]),
        }
    }
}

impl<T: Pod, K: Ring> DerefMut for Loan<'_, T, K> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.staged {
            Some(v) => v,
            // As in `deref`.
            None => bytemuck::from_bytes_mut(&mut self.grant[..size_of::<T>()]),
        }
    }
}

/// One received `T`, from [`Receiver::recv`]. Derefs to the value (in the
/// ring for alignments up to 8, else an aligned copy); dropping it frees the
/// value's space.
pub struct ReadGrant<'a, T, K: Ring> {
    held: Held<'a, T, K>,
}

enum Held<'a, T, K: Ring> {
    InPlace(K::ReadGrant<'a>),
    Copied(T),
}

impl<T: Pod, K: Ring> Deref for ReadGrant<'_, T, K> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        match &self.held {
            // Checked aligned and sized when the grant was made.
            Held::InPlace(g) => bytemuck::from_bytes(g),
            Held::Copied(v) => v,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Pair {
        a: u64,
        b: u32,
        c: u32,
    }

    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C, align(32))]
    struct Wide {
        x: [u64; 4],
    }

    /// A segment name for this test, and the guard that removes it.
    fn named(tag: &str) -> (String, Cleanup) {
        let n = format!("test-typed-{}-{tag}", std::process::id());
        (n.clone(), Cleanup(n))
    }

    /// Removes the segment when dropped, whatever the test did.
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = crate::remove(&self.0);
        }
    }

    fn roundtrip<K: Ring>(opts: &Options) {
        let (mut tx, mut rx) = channel::<Pair, K>(opts).unwrap();
        for i in 0..100u32 {
            let mut l = tx.loan().unwrap();
            *l = Pair {
                a: u64::from(i) << 40,
                b: i,
                c: !i,
            };
            l.send();
            tx.send(Pair { a: 1, b: 2, c: i }).unwrap();
            let got = rx.recv().map(|g| *g).unwrap();
            assert_eq!((got.a >> 40, got.b, got.c), (u64::from(i), i, !i));
            let r = rx.recv().unwrap();
            assert_eq!(*r, Pair { a: 1, b: 2, c: i });
        }
        assert_eq!(rx.try_recv().map(|g| *g), Err(Error::Empty));
        drop(tx);
        assert_eq!(rx.recv().map(|g| *g), Err(Error::Disconnected));
    }

    #[test]
    fn spsc_roundtrip() {
        roundtrip::<Spsc>(&Options::new().capacity(1024));
    }

    #[test]
    fn mpmc_roundtrip() {
        roundtrip::<Mpmc>(&Options::new().slots(4));
    }

    #[test]
    fn over_aligned_values_are_copied() {
        fn go<K: Ring>(o: Options) {
            let (mut tx, mut rx) = channel::<Wide, K>(&o).unwrap();
            for i in 0..20u64 {
                let mut l = tx.loan().unwrap();
                l.x = [i, i + 1, i + 2, i + 3];
                l.send();
                let r = rx.recv().unwrap();
                assert_eq!((&*r as *const Wide as usize) % 32, 0);
                assert_eq!(r.x, [i, i + 1, i + 2, i + 3]);
            }
        }
        go::<Spsc>(Options::new());
        go::<Mpmc>(Options::new().slots(8));
    }

    #[test]
    fn typed_mpmc_refuses_a_slot_size_that_does_not_fit_the_type() {
        let e = channel::<u64, Mpmc>(&Options::new().slot_size(64)).err();
        assert!(matches!(e, Some(OpenError::InvalidOptions(_))), "{e:?}");
        assert!(channel::<u64, Mpmc>(&Options::new().slot_size(24)).is_ok());
    }

    #[test]
    fn dropped_loan_sends_nothing() {
        fn go<K: Ring>(o: Options) {
            let (mut tx, mut rx) = channel::<u32, K>(&o).unwrap();
            drop(tx.loan().unwrap());
            tx.send(5).unwrap();
            assert_eq!(rx.try_recv().map(|g| *g), Ok(5));
            assert_eq!(rx.try_recv().map(|g| *g), Err(Error::Empty));
        }
        go::<Spsc>(Options::new());
        go::<Mpmc>(Options::new().slots(2));
    }

    #[test]
    fn zero_sized_and_byte_values() {
        let (mut tx, mut rx) = channel::<(), Spsc>(&Options::new()).unwrap();
        tx.send(()).unwrap();
        assert_eq!(rx.try_recv().map(|g| *g), Ok(()));
        let (mut tx, mut rx) = channel::<u8, Mpmc>(&Options::new().slots(2)).unwrap();
        tx.send(9).unwrap();
        assert_eq!(rx.try_recv().map(|g| *g), Ok(9));
    }

    #[test]
    fn full_and_timeouts() {
        let (mut tx, mut rx) = channel::<u64, Mpmc>(&Options::new().slots(2)).unwrap();
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(Error::Full));
        assert!(tx.try_loan().is_err());
        let t = std::time::Duration::from_millis(10);
        assert_eq!(tx.send_timeout(3, t), Err(Error::Timeout));
        assert_eq!(rx.recv_timeout(t).map(|g| *g), Ok(1));
        assert_eq!(rx.recv_timeout(t).map(|g| *g), Ok(2));
        assert_eq!(rx.recv_timeout(t).map(|g| *g), Err(Error::Timeout));
    }

    #[test]
    fn spsc_capacity_too_small_for_the_type() {
        let r = channel::<[u8; 128], Spsc>(&Options::new().capacity(256));
        assert!(matches!(r, Err(OpenError::InvalidOptions(m)) if m.contains("at least 512")));
        assert!(channel::<[u8; 128], Spsc>(&Options::new().capacity(512)).is_ok());
    }

    #[test]
    fn fingerprints_differ_by_type() {
        assert_ne!(fingerprint::<Pair>(), fingerprint::<[u64; 2]>());
        assert_ne!(fingerprint::<u32>(), fingerprint::<f32>());
        assert_eq!(type_info::<Wide>().unwrap().align, 32);
    }

    #[test]
    #[cfg_attr(miri, ignore = "shm_open is not available under Miri")]
    fn named_type_mismatch() {
        let (n, _c) = named("mismatch");
        let opts = Options::new().capacity(4096);
        let mut tx = Sender::<Pair>::create(&n, &opts).unwrap();
        assert_eq!(tx.name(), Some(n.as_str()));
        // Another type, the raw byte API, another kind: all refused.
        let e = Receiver::<[u64; 2]>::open(&n, &opts).err().unwrap();
        assert!(matches!(e, OpenError::TypeMismatch { .. }), "{e}");
        let e = crate::spsc::Consumer::open(&n, &opts).err().unwrap();
        assert!(matches!(e, OpenError::TypeMismatch { .. }), "{e}");
        let e = Receiver::<Pair, Mpmc>::open(&n, &opts).err().unwrap();
        assert!(matches!(e, OpenError::KindMismatch { .. }), "{e}");
        // The right type works.
        let mut rx = Receiver::<Pair>::open_or_create(&n, &opts).unwrap();
        tx.send(Pair { a: 1, b: 2, c: 3 }).unwrap();
        assert_eq!(rx.recv().map(|g| *g).unwrap().c, 3);
        drop(tx);
        assert_eq!(rx.recv().map(|g| *g), Err(Error::Disconnected));
    }

    #[test]
    #[cfg_attr(miri, ignore = "shm_open is not available under Miri")]
    fn named_raw_segment_refuses_typed_open() {
        let (n, _c) = named("raw");
        let opts = Options::new().slots(4).slot_size(64);
        let _p = crate::mpmc::Producer::create(&n, &opts).unwrap();
        let e = Receiver::<u64, Mpmc>::open(&n, &opts).err().unwrap();
        assert!(matches!(e, OpenError::TypeMismatch { .. }), "{e}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "shm_open is not available under Miri")]
    fn named_mpmc_clones() {
        let (n, _c) = named("mpmc");
        let opts = Options::new().slots(8);
        let mut rx = Receiver::<Pair, Mpmc>::create(&n, &opts).unwrap();
        let mut tx = Sender::<Pair, Mpmc>::open(&n, &opts).unwrap();
        let mut tx2 = tx.try_clone().unwrap();
        let mut rx2 = rx.try_clone().unwrap();
        tx.send(Pair { a: 1, b: 0, c: 0 }).unwrap();
        tx2.send(Pair { a: 2, b: 0, c: 0 }).unwrap();
        assert_eq!(
            rx.recv().map(|g| *g).unwrap().a + rx2.recv().map(|g| *g).unwrap().a,
            3
        );
        drop((tx, tx2));
        assert_eq!(rx.recv().map(|g| *g), Err(Error::Disconnected));
    }
}
