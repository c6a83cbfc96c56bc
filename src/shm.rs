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

/// Removes the segment `name` from `/dev/shm`. Endpoints that have it mapped
/// keep working; new opens fail with `NotFound`.
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
    let c = os_name(name);
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::shm_unlink(c.as_ptr()) } != 0 {
        return Err(io_err(name, "shm_unlink", io::Error::last_os_error()));
    }
    Ok(())
}

/// Where glibc's `shm_open` keeps its objects; `rename` and `list` work on
/// the files there directly.
const SHM_DIR: &str = "/dev/shm";

/// Prefix (after [`PREFIX`]) of the private name a creator builds a segment
/// under before publishing it: `shmq..new.PID.N.NAME`. It is not a valid
/// user name (it starts with '.'), so no opener ever finds it.
pub(crate) const TEMP_MARK: &str = ".new.";

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
pub(crate) struct Segment {
    /// The user-facing name, or (until published) the private one.
    name: String,
    /// Set while the segment lives under its private creation name: dropping
    /// it then removes that name.
    temp: bool,
    file: File,
    map: Option<MmapRaw>,
    dev: u64,
    ino: u64,
}

impl Segment {
    /// Creates a segment of `size` bytes under a private name, holding the
    /// init lock from the moment the file exists (so that nobody takes it
    /// for a dead creator's), sized, space-reserved, zero-filled, mapped.
    /// [`publish`](Self::publish) then gives it its user-facing name.
    pub(crate) fn create_private(name: &str, size: u64, mode: u32) -> Result<Segment, OpenError> {
        validate_name(name)?;
        let size_i = i64::try_from(size)
            .map_err(|_| OpenError::InvalidOptions(format!("segment size {size} is too large")))?;
        let n = crate::sync::unique_id();
        let private = format!("{TEMP_MARK}{}.{n}.{name}", std::process::id());
        let fd = shm_open(
            &private,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::mode_t,
        )
        .map_err(|e| rename_err(e, name))?;
        let file = File::from(fd);
        let md = file.metadata().map_err(|e| io_err(name, "fstat", e))?;
        let mut seg = Segment {
            name: private,
            temp: true,
            file,
            map: None,
            dev: md.dev(),
            ino: md.ino(),
        };
        // From here on, dropping `seg` removes the private name.
        if !seg
            .try_lock(crate::layout::LOCK_INIT, Lock::Exclusive)
            .unwrap_or(false)
        {
            return Err(OpenError::Io {
                name: name.to_owned(),
                op: "fcntl(F_OFD_SETLK)",
                source: io::Error::last_os_error(),
            });
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
        Ok(seg)
    }

    /// Gives a segment made by [`create_private`](Self::create_private) its
    /// user-facing name, atomically and only if the name is free
    /// (`renameat2(RENAME_NOREPLACE)`): an opener finds either nothing or a
    /// finished segment, never one being made.
    ///
    /// # Errors
    /// [`OpenError::AlreadyExists`] if the name is taken (the segment keeps
    /// its private name and can be published again).
    pub(crate) fn publish(&mut self, name: &str) -> Result<(), OpenError> {
        let from = CString::new(format!("{SHM_DIR}/{PREFIX}{}", self.name))
            .expect("validated names contain no NUL");
        let to = CString::new(format!("{SHM_DIR}/{PREFIX}{name}"))
            .expect("validated names contain no NUL");
        // SAFETY: two valid NUL-terminated paths that outlive the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(io_err(name, "renameat2", e));
            }
            // No RENAME_NOREPLACE here: link (which also refuses an existing
            // name), then drop the private name.
            // SAFETY: as above.
            if unsafe { libc::link(from.as_ptr(), to.as_ptr()) } != 0 {
                return Err(io_err(name, "link", io::Error::last_os_error()));
            }
            // SAFETY: as above.
            unsafe { libc::unlink(from.as_ptr()) };
        }
        self.name = name.to_owned();
        self.temp = false;
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
        let map = if md.len() >= min_size && md.len() > 0 {
            Some(MmapRaw::map_raw(&file).map_err(|e| io_err(name, "mmap", e))?)
        } else {
            None
        };
        Ok(Segment {
            name: name.to_owned(),
            temp: false,
            file,
            map,
            dev: md.dev(),
            ino: md.ino(),
        })
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
        md.dev() == self.dev && md.ino() == self.ino && remove(&self.name).is_ok()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.temp {
            // Never published: nobody else knows this private name.
            let c = os_name(&self.name);
            // SAFETY: a valid NUL-terminated string that outlives the call.
            unsafe { libc::shm_unlink(c.as_ptr()) };
        }
    }
}

/// Errors of a private create, named after the user's name.
fn rename_err(e: OpenError, name: &str) -> OpenError {
    match e {
        OpenError::Io { op, source, .. } => OpenError::Io {
            name: name.to_owned(),
            op,
            source,
        },
        OpenError::PermissionDenied { detail, .. } => OpenError::PermissionDenied {
            name: name.to_owned(),
            detail,
        },
        OpenError::NoSpace { size, .. } => OpenError::NoSpace {
            name: name.to_owned(),
            size,
        },
        other => other,
    }
}

/// Private creation names in `/dev/shm` (the part after [`PREFIX`]) whose
/// creator is gone: the init lock is free. A creator holds it from the
/// moment the file exists until its endpoint is attached.
pub(crate) fn dead_private_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix(PREFIX).map(str::to_owned))
        .filter(|n| n.starts_with(TEMP_MARK))
        .filter(|n| {
            let Ok(fd) = shm_open(n, libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0) else {
                return false;
            };
            let f = File::from(fd);
            let mut fl = flock(libc::F_WRLCK as libc::c_short, crate::layout::LOCK_INIT);
            // SAFETY: `fl` is a valid, initialised flock for the call.
            let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
            rc == 0 && fl.l_type == libc::F_UNLCK as libc::c_short
        })
        .collect()
}

/// Removes a private creation name found by [`dead_private_names`].
pub(crate) fn remove_private(private: &str) -> bool {
    let c = os_name(private);
    // SAFETY: a valid NUL-terminated string that outlives the call.
    unsafe { libc::shm_unlink(c.as_ptr()) == 0 }
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
                if !rest.starts_with(TEMP_MARK) {
                    out.push(rest.to_owned());
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
