//! The one reader of segment headers: every path that looks at a header a
//! peer wrote (open, heap images, `inspect`, `gc`, the CLI, the fuzz hooks)
//! reads it here, each field once, and gets a [`Validated`] description or
//! a typed error. Also what a caller asks for ([`Spec`]) and the check of a
//! header against it.

use crate::error::{Backend, Kind, OpenError};
use crate::layout::{Geometry, Header, LAYOUT_HASH, MAGIC, STATE_READY, VERSION};
use crate::options::Options;
use crate::sync::Ordering;

/// Element type of a typed channel: size, alignment and a fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct TypeInfo {
    pub size: u32,
    pub align: u32,
    pub fingerprint: u64,
}

impl std::fmt::Display for TypeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == TypeInfo::default() {
            f.write_str("raw bytes")
        } else {
            write!(
                f,
                "size {} align {} fingerprint {:#x}",
                self.size, self.align, self.fingerprint
            )
        }
    }
}

/// What a caller wants: the ring kind and the element type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec {
    pub kind: Kind,
    pub ty: TypeInfo,
}

impl Spec {
    /// The geometry a creator lays out for `opts` (checked).
    pub(crate) fn geometry(&self, opts: &Options) -> Result<Geometry, OpenError> {
        opts.check_for(self.kind)?;
        Ok(match self.kind {
            Kind::Spsc => Geometry {
                kind: Kind::Spsc,
                capacity: opts.capacity,
                slot_size: 0,
                max_producers: 1,
                max_consumers: 1,
            },
            Kind::Mpmc => Geometry {
                kind: Kind::Mpmc,
                capacity: opts.slots,
                slot_size: opts.slot_size as u32,
                max_producers: opts.max_producers,
                max_consumers: opts.max_consumers,
            },
        })
    }

    /// Checks an opened segment's kind, element type and wake backend
    /// against this spec and `opts`.
    pub(crate) fn check(&self, name: &str, v: &Validated, opts: &Options) -> Result<(), OpenError> {
        if v.geo.kind != self.kind {
            return Err(OpenError::KindMismatch {
                name: name.to_owned(),
                expected: self.kind,
                found: v.geo.kind,
            });
        }
        if v.ty != self.ty {
            return Err(OpenError::TypeMismatch {
                name: name.to_owned(),
                expected: self.ty.to_string(),
                found: v.ty.to_string(),
            });
        }
        opts.check_kind(self.kind)?;
        if opts.spin_only && v.backend != Backend::SpinOnly {
            return Err(OpenError::WaitMismatch {
                name: name.to_owned(),
                expected: Backend::SpinOnly,
                found: v.backend,
            });
        }
        if let Some(want) = opts.wait.backend() {
            if opts.wait_explicit && want != v.backend {
                return Err(OpenError::WaitMismatch {
                    name: name.to_owned(),
                    expected: want,
                    found: v.backend,
                });
            }
        }
        Ok(())
    }
}

/// A READY header, every field checked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Validated {
    pub geo: Geometry,
    pub backend: Backend,
    pub ty: TypeInfo,
    pub version: u32,
}

/// What a header says.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Found {
    /// Its creator has not finished (or died before finishing): the magic
    /// is ours or not written yet.
    NotReady,
    /// Ready and valid.
    Ready(Validated),
}

fn bad_magic(name: &str, magic: u64) -> OpenError {
    OpenError::NotShmq {
        name: name.to_owned(),
        detail: format!("bad magic {magic:#018x}"),
    }
}

/// Reads and validates the header `h` of a file of `file_len` bytes (which
/// holds at least a header).
///
/// # Errors
/// `NotShmq` (a foreign magic), `VersionMismatch`, `Corrupted` (fields that
/// contradict each other or the file's size).
pub(crate) fn read_header(name: &str, h: &Header, file_len: u64) -> Result<Found, OpenError> {
    let m = &h.meta;
    // Acquire: pairs with the creator's Release store of READY; every field
    // below was written before it.
    if m.state.load(Ordering::Acquire) != STATE_READY {
        // Relaxed: a look for foreign files; a creator at work has written
        // either nothing yet (0) or our magic.
        let magic = m.magic.load(Ordering::Relaxed);
        if magic != 0 && magic != MAGIC {
            return Err(bad_magic(name, magic));
        }
        return Ok(Found::NotReady);
    }
    let corrupted = |detail: String| OpenError::Corrupted {
        name: name.to_owned(),
        detail,
    };
    // Relaxed loads: ordered after the Acquire load of READY above.
    let magic = m.magic.load(Ordering::Relaxed);
    if magic != MAGIC {
        return Err(bad_magic(name, magic));
    }
    let version = m.version.load(Ordering::Relaxed);
    let hash = m.layout_hash.load(Ordering::Relaxed);
    if version != VERSION || hash != LAYOUT_HASH {
        return Err(OpenError::VersionMismatch {
            name: name.to_owned(),
            found: version,
            expected: VERSION,
            found_hash: hash,
            expected_hash: LAYOUT_HASH,
        });
    }
    let raw_kind = m.kind.load(Ordering::Relaxed);
    let kind =
        Kind::from_raw(raw_kind).ok_or_else(|| corrupted(format!("unknown kind {raw_kind}")))?;
    let geo = Geometry {
        kind,
        capacity: m.capacity.load(Ordering::Relaxed),
        slot_size: m.slot_size.load(Ordering::Relaxed),
        max_producers: m.max_producers.load(Ordering::Relaxed),
        max_consumers: m.max_consumers.load(Ordering::Relaxed),
    };
    if !geo.is_valid() {
        return Err(corrupted(format!("impossible geometry {geo:?}")));
    }
    let total = geo.total_size();
    let recorded = m.total_size.load(Ordering::Relaxed);
    if total != Some(file_len) || recorded != file_len {
        return Err(corrupted(format!(
            "header says {recorded} bytes (geometry {total:?}) but the file has {file_len}"
        )));
    }
    let raw_wake = m.wake.load(Ordering::Relaxed);
    let backend = Backend::from_raw(raw_wake)
        .ok_or_else(|| corrupted(format!("unknown wake backend {raw_wake}")))?;
    if backend == Backend::Semaphore {
        for (word, which) in [(&h.not_empty, "not_empty"), (&h.not_full, "not_full")] {
            crate::notify::check_word(word)
                .map_err(|c| corrupted(format!("the {which} semaphore: {c}")))?;
        }
    }
    let ty = TypeInfo {
        size: m.type_size.load(Ordering::Relaxed),
        align: m.type_align.load(Ordering::Relaxed),
        fingerprint: m.type_fingerprint.load(Ordering::Relaxed),
    };
    Ok(Found::Ready(Validated {
        geo,
        backend,
        ty,
        version,
    }))
}

/// The first word of a file too short for a header: `Err(NotShmq)` if it
/// is a foreign magic (`n` is how many bytes could be read).
pub(crate) fn check_short(name: &str, first: [u8; 8], n: usize) -> Result<(), OpenError> {
    let magic = u64::from_le_bytes(first);
    if n == 8 && magic != 0 && magic != MAGIC {
        return Err(bad_magic(name, magic));
    }
    Ok(())
}
