//! Named shared-memory segments: `shm_open` under `/dev/shm`, permission and
//! size checks, the mapping, and the open-file-description locks that say
//! which endpoints are alive.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::ptr::NonNull;

use memmap2::MmapRaw;

use crate::error::OpenError;

/// Prefix of every shmq object under `/dev/shm`, so tools can find them.
pub const PREFIX: &str = "shmq.";

/// Longest user name accepted.
pub const MAX_NAME_LEN: usize = 200;

/// Checks a user-facing segment name against the rule: 1–200 bytes of
/// `[A-Za-z0-9._-]`, not starting with `.`.
///
/// # Errors
/// [`OpenError::InvalidName`] naming the broken part of the rule.
///
/// # Examples
/// ```
/// assert!(shmq::validate_name("orders").is_ok());
/// assert!(shmq::validate_name("../etc").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), OpenError> {
    let bad = |reason| {
        Err(OpenError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 200 bytes");
    }
    if name.starts_with('.') {
        return bad("it starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("it contains a character outside [A-Za-z0-9._-]");
    }
    Ok(())
}

/// The object name passed to `shm_open`: `/shmq.NAME`.
pub(crate) fn os_name(name: &str) -> CString {
    // validate_name has excluded NUL bytes.
    CString::new(format!("/{PREFIX}{name}")).expect("validated names contain no NUL")
}

fn io_err(name: &str, op: &'static str, source: io::Error) -> OpenError {
    match source.raw_os_error() {
        Some(libc::ENOENT) => OpenError::NotFound {
            name: name.to_owned(),
        },
        Some(libc::EEXIST) => OpenError::AlreadyExists {
            name: name.to_owned(),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => OpenError::PermissionDenied {
            name: name.to_owned(),
            detail: format!("{op}: {source}"),
        },
        Some(libc::ELOOP) => OpenError::NotShmq {
            name: name.to_owned(),
            detail: "it is a symbolic link".into(),
        },
        Some(libc::ENOSPC) | Some(libc::ENOMEM) | Some(libc::EFBIG) => OpenError::NoSpace {
            name: name.to_owned(),
            size: 0,
        },
        _ => OpenError::Io {
            name: name.to_owned(),
            op,
            source,
        },
    }
}

fn shm_open(name: &str, flags: libc::c_int, mode: libc::mode_t) -> Result<OwnedFd, OpenError> {
    let c = os_name(name);
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let fd = unsafe { libc::shm_open(c.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io_err(name, "shm_open", io::Error::last_os_error()));
    }
    // SAFETY: shm_open returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes the segment `name` from `/dev/shm`, whether or not it is in
/// use: endpoints that have it mapped keep working, on a segment nobody can
/// open any more; new opens fail with `NotFound` (or create a new one). To
/// remove it only if no live process uses it, use
/// [`gc_one`](crate::gc_one), which decides and removes under one lock;
/// checking [`inspect`](crate::inspect()) first and then calling `remove` is
/// a race with an opener.
///
/// The removal waits (up to a second) for endpoints that are just opening
/// the segment to finish attaching, so none of them ends up on the removed
/// segment without knowing; one that attached keeps working, as above.
///
/// # Errors
/// [`OpenError::NotFound`] if there is no such segment, or the OS error.
///
/// # Examples
/// ```
/// # use shmq::{remove, OpenError};
/// assert!(matches!(remove("surely-not-there-42"), Err(OpenError::NotFound { .. })));
/// ```
pub fn remove(name: &str) -> Result<(), OpenError> {
    validate_name(name)?;
    #[cfg(not(loom))]
    if let Ok(seg) = Segment::open(name, 0o777, u64::MAX) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        if seg.lock_until(crate::layout::LOCK_GATE, Lock::Exclusive, deadline)
            && seg.unlink_if_same()
        {
            return Ok(());
        }
    }
    unlink(name)
}

/// `shm_unlink` by name.
fn unlink(name: &str) -> Result<(), OpenError> {
    let c = os_name(name);
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::shm_unlink(c.as_ptr()) } != 0 {
        return Err(io_err(name, "shm_unlink", io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(loom)]
#[path = "shm_loom.rs"]
mod model;
#[cfg(loom)]
pub(crate) use model::{Segment, names as model_names};

/// Where glibc's `shm_open` keeps its objects; `linkat` and `list` work on
/// the files there directly.
const SHM_DIR: &str = "/dev/shm";

/// A kind of OFD lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Shared (`F_RDLCK`): many holders at once.
    Shared,
    /// Exclusive (`F_WRLCK`).
    Exclusive,
}

/// One open of a named segment: its own file description (so its own OFD
/// locks) and, once sized, its own mapping.
///
/// Under loom the same API is served by a model of the namespace and its
/// locks (`shm_loom.rs`), so the models run the real create, open, attach
/// and remove protocols.
#[cfg(not(loom))]
pub(crate) struct Segment {
    /// The user-facing name (empty until a new segment is published).
    name: String,
    file: File,
    map: Option<MmapRaw>,
    dev: u64,
    ino: u64,
}

#[cfg(not(loom))]
impl Segment {
    /// Creates a segment for `geo` as an anonymous file in `/dev/shm`
    /// (`O_TMPFILE`: it has no name yet, so no opener, `gc` or reclaim can
    /// see it half made), holding the init lock, sized, space-reserved,
    /// zero-filled and mapped. [`publish`](Self::publish) then gives it its
    /// name.
    pub(crate) fn create_private(
        name: &str,
        geo: &crate::layout::Geometry,
        mode: u32,
    ) -> Result<Segment, OpenError> {
        validate_name(name)?;
        let size = geo
            .total_size()
            .ok_or_else(|| OpenError::InvalidOptions("segment size overflows".into()))?;
        let size_i = i64::try_from(size)
            .map_err(|_| OpenError::InvalidOptions(format!("segment size {size} is too large")))?;
        let dir = CString::new(SHM_DIR).expect("no NUL");
        // SAFETY: a valid NUL-terminated path that outlives the call.
        let fd = unsafe {
            libc::open(
                dir.as_ptr(),
                libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io_err(
                name,
                "open(/dev/shm, O_TMPFILE) (needs Linux 3.11+ and a tmpfs /dev/shm)",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: open returned a fresh descriptor that nothing else owns.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let md = file.metadata().map_err(|e| io_err(name, "fstat", e))?;
        let mut seg = Segment {
            name: String::new(),
            file,
            map: None,
            dev: md.dev(),
            ino: md.ino(),
        };
        // Held until the creator's endpoint is attached: a published segment
        // that is not attached yet is still being created, not stale.
        if !seg
            .try_lock(crate::layout::LOCK_INIT, Lock::Exclusive)
            .map_err(|e| io_err(name, "fcntl(F_OFD_SETLK)", e))?
        {
            unreachable!("nobody else can see an unnamed file");
        }
        let fd = seg.file.as_raw_fd();
        // The umask may have cleared bits the caller asked for; set exactly.
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::fchmod(fd, mode as libc::mode_t) } != 0 {
            return Err(io_err(name, "fchmod", io::Error::last_os_error()));
        }
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::ftruncate(fd, size_i) } != 0 {
            let e = io_err(name, "ftruncate", io::Error::last_os_error());
            return Err(no_space(e, name, size));
        }
        // Reserve the pages now, so a full /dev/shm fails here with a clear
        // error instead of SIGBUS on first touch later.
        // SAFETY: plain syscall on a descriptor we own.
        let rc = unsafe { libc::posix_fallocate(fd, 0, size_i) };
        if rc != 0 {
            let e = io_err(name, "posix_fallocate", io::Error::from_raw_os_error(rc));
            return Err(no_space(e, name, size));
        }
        seg.map = Some(MmapRaw::map_raw(&seg.file).map_err(|e| io_err(name, "mmap", e))?);
        seg.register();
        Ok(seg)
    }

    /// Records the segment for the fork handler (see `fork.rs`).
    fn register(&self) {
        let (addr, len) = self
            .map
            .as_ref()
            .map_or((0, 0), |m| (m.as_mut_ptr() as usize, m.len()));
        crate::fork::register(self.file.as_raw_fd(), addr, len);
    }

    /// Gives a segment made by [`create_private`](Self::create_private) its
    /// name, atomically and only if the name is free (`linkat`, which
    /// refuses an existing name): an opener finds either nothing or a
    /// finished segment, never one being made.
    ///
    /// # Errors
    /// [`OpenError::AlreadyExists`] if the name is taken (the segment stays
    /// unnamed and can be published again).
    pub(crate) fn publish(&mut self, name: &str) -> Result<(), OpenError> {
        let to = CString::new(format!("{SHM_DIR}/{PREFIX}{name}"))
            .expect("validated names contain no NUL");
        let from =
            CString::new(format!("/proc/self/fd/{}", self.file.as_raw_fd())).expect("no NUL");
        // SAFETY: two valid NUL-terminated paths that outlive the call.
        let mut rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
            // No /proc: link the descriptor itself (needs
            // CAP_DAC_READ_SEARCH).
            // SAFETY: as above; an empty path with AT_EMPTY_PATH names `fd`.
            rc = unsafe {
                libc::linkat(
                    self.file.as_raw_fd(),
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            };
        }
        if rc != 0 {
            return Err(io_err(name, "linkat", io::Error::last_os_error()));
        }
        self.name = name.to_owned();
        Ok(())
    }

    /// Opens an existing segment and checks what `fstat` can tell: a regular
    /// file, ours, not more permissive than `max_mode`. It is mapped only if
    /// it holds at least `min_size` bytes; a shorter file (a creator of an
    /// older layout at work, or one that died before sizing it) is left
    /// unmapped for the caller to judge.
    pub(crate) fn open(name: &str, max_mode: u32, min_size: u64) -> Result<Segment, OpenError> {
        validate_name(name)?;
        let fd = shm_open(name, libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0)?;
        let file = File::from(fd);
        let md = file.metadata().map_err(|e| io_err(name, "fstat", e))?;
        let mut seg = Segment {
            name: name.to_owned(),
            file,
            map: None,
            dev: md.dev(),
            ino: md.ino(),
        };
        if !md.file_type().is_file() {
            return Err(OpenError::NotShmq {
                name: name.into(),
                detail: "it is not a regular file".into(),
            });
        }
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if md.uid() != euid {
            return Err(OpenError::PermissionDenied {
                name: name.into(),
                detail: format!(
                    "it is owned by uid {}, not by us (uid {euid}); shmq only opens segments of the same user",
                    md.uid()
                ),
            });
        }
        let extra = md.mode() & 0o7777 & !max_mode;
        if extra != 0 {
            return Err(OpenError::PermissionDenied {
                name: name.into(),
                detail: format!(
                    "its mode {:o} grants bits {extra:o} beyond the allowed {max_mode:o}; someone else may write it",
                    md.mode() & 0o7777
                ),
            });
        }
        if md.len() >= min_size && md.len() > 0 {
            seg.map = Some(MmapRaw::map_raw(&seg.file).map_err(|e| io_err(name, "mmap", e))?);
        }
        seg.register();
        Ok(seg)
    }

    /// Whether the file was too short to map when opened.
    pub(crate) fn is_short(&self) -> bool {
        self.map.is_none()
    }

    /// The file's current size.
    pub(crate) fn file_len(&self) -> u64 {
        self.file.metadata().map(|m| m.len()).unwrap_or(0)
    }

    /// Reads up to `buf.len()` bytes from the start of the file (for files
    /// too short to map).
    pub(crate) fn read_start(&self, buf: &mut [u8]) -> usize {
        use std::os::unix::fs::FileExt;
        self.file.read_at(buf, 0).unwrap_or(0)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// The header.
    ///
    /// # Panics
    /// If the segment is not mapped (see [`is_short`](Self::is_short)).
    pub(crate) fn header(&self) -> &crate::layout::Header {
        // SAFETY: mapped, so at least a header long (`open` maps only files
        // of `min_size`, a header, or more; `create_private` maps a whole
        // segment); page-aligned; every header field is an atomic (or a
        // RawCell never read by Rust), so a shared reference is sound while
        // other processes write them; the mapping lives as long as `self`.
        unsafe { &*(self.ptr().as_ptr() as *const crate::layout::Header) }
    }

    /// # Panics
    /// If the segment is not mapped (see [`is_short`](Self::is_short)).
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        let map = self.map.as_ref().expect("segment is mapped");
        NonNull::new(map.as_mut_ptr()).expect("mmap never returns null")
    }

    /// Takes a lock on `byte` of the file for this file description,
    /// without blocking. `Ok(false)` when another description holds a
    /// conflicting lock.
    pub(crate) fn try_lock(&self, byte: u64, kind: Lock) -> io::Result<bool> {
        let t = match kind {
            Lock::Shared => libc::F_RDLCK,
            Lock::Exclusive => libc::F_WRLCK,
        };
        let mut fl = flock(t as libc::c_short, byte);
        // SAFETY: `fl` is a valid, initialised flock for the duration of the call.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
            _ => Err(e),
        }
    }

    /// [`try_lock`](Self::try_lock) until it succeeds or `deadline` passes
    /// (looking every 50 µs: holders keep these locks for microseconds).
    pub(crate) fn lock_until(&self, byte: u64, kind: Lock, deadline: std::time::Instant) -> bool {
        loop {
            match self.try_lock(byte, kind) {
                Ok(true) => return true,
                Ok(false) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
                _ => return false,
            }
        }
    }

    /// Releases a lock taken with `try_lock` (nothing if none is held).
    pub(crate) fn unlock(&self, byte: u64) {
        let mut fl = flock(libc::F_UNLCK as libc::c_short, byte);
        // SAFETY: `fl` is a valid, initialised flock for the duration of the call.
        let _ = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    }

    /// Whether another file description (any process) holds a lock on `byte`.
    /// Our own description's locks never count.
    pub(crate) fn is_locked(&self, byte: u64) -> bool {
        let mut fl = flock(libc::F_WRLCK as libc::c_short, byte);
        // SAFETY: `fl` is a valid, initialised flock for the duration of the call.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        // On error we cannot tell; say "alive" so that we never declare a live
        // peer dead.
        rc != 0 || fl.l_type != libc::F_UNLCK as libc::c_short
    }

    /// Whether the file has lost its name (removed since we opened it).
    pub(crate) fn is_unlinked(&self) -> bool {
        self.file.metadata().is_ok_and(|m| m.nlink() == 0)
    }

    /// Whether `other` is an open of the same file.
    pub(crate) fn same_file(&self, other: &Segment) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }

    /// `fstat` of the open file.
    pub(crate) fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// Unlinks the name if it still refers to this very segment (and not to a
    /// newer one created under the same name since). Returns whether it did.
    ///
    /// Callers hold the segment's exclusive gate lock, which every remover
    /// takes: so nobody else can remove this file between the check and the
    /// unlink, and no new file can take the name before it is gone.
    pub(crate) fn unlink_if_same(&self) -> bool {
        let Ok(md) = std::fs::symlink_metadata(format!("{SHM_DIR}/{PREFIX}{}", self.name)) else {
            return false;
        };
        md.dev() == self.dev && md.ino() == self.ino && unlink(&self.name).is_ok()
    }
}

#[cfg(not(loom))]
impl Drop for Segment {
    fn drop(&mut self) {
        // Release every lock of this description explicitly: closing the
        // descriptor does so only once no other process refers to the
        // description, and a child this process is just spawning (between
        // its fork and its exec, which closes our CLOEXEC descriptors) still
        // does. (In a forked child the descriptor is /dev/null by now: see
        // `fork.rs`.)
        let mut fl = flock(libc::F_UNLCK as libc::c_short, 0);
        fl.l_len = 0; // to the end of the file, and beyond
        // SAFETY: `fl` is a valid, initialised flock for the duration of the call.
        let _ = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
        // Before the descriptor is closed (the `File` drops after this).
        crate::fork::unregister(self.file.as_raw_fd());
    }
}

fn flock(kind: libc::c_short, byte: u64) -> libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    fl.l_pid = 0; // required for OFD locks
    fl
}

fn no_space(e: OpenError, name: &str, size: u64) -> OpenError {
    match e {
        OpenError::NoSpace { .. } => OpenError::NoSpace {
            name: name.to_owned(),
            size,
        },
        other => other,
    }
}

/// Names of every shmq segment currently in `/dev/shm` (without the prefix).
///
/// # Errors
/// The OS error if `/dev/shm` cannot be listed.
pub fn list() -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/dev/shm")? {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str() {
            if let Some(rest) = n.strip_prefix(PREFIX) {
                out.push(rest.to_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}
