//! `shmq ls`, `stat`, `rm` and `gc`: look at segments from outside (no
//! attaching, no locks taken) and clean up the ones nobody uses.

use std::fmt::Write as _;

use serde_json::{Value, json};
use shmq::{EndpointState, GcOutcome, Kind, OpenError, SegmentInfo};

use super::{FAILED, GcArgs, LsArgs, OK, RmArgs, StatArgs, UNUSABLE, emit, fail, human, open_code};

/// `writeln!` into a `String` (which cannot fail).
macro_rules! say {
    ($o:expr, $($arg:tt)*) => {{
        let _ = writeln!($o, $($arg)*);
    }};
}

fn state_name(s: EndpointState) -> &'static str {
    match s {
        EndpointState::Alive => "alive",
        EndpointState::Dead => "dead",
        EndpointState::Detached => "detached",
    }
}

/// `live`, `stale`, `initialising`, …, plus `, corrupted` if poisoned.
fn status(info: &SegmentInfo) -> String {
    let mut s = match (info.ready, info.stale) {
        (false, true) => "stale (its creator died while initialising)".to_owned(),
        (false, false) => "initialising".to_owned(),
        (true, false) => "live".to_owned(),
        (true, true) if info.used > 0 => format!("stale, {} unread", fill_amount(info)),
        (true, true) => "stale".to_owned(),
    };
    if info.poisoned {
        s.push_str(", corrupted");
    }
    s
}

fn largest_message(info: &SegmentInfo) -> u64 {
    match info.kind {
        Some(Kind::Spsc) => (info.capacity / 2).saturating_sub(8),
        Some(Kind::Mpmc) => u64::from(info.slot_size).saturating_sub(16),
        _ => 0,
    }
}

fn size_text(info: &SegmentInfo) -> String {
    match info.kind {
        Some(Kind::Spsc) => human(info.capacity),
        Some(Kind::Mpmc) => format!("{} x {}", info.capacity, human(info.slot_size.into())),
        _ => "-".into(),
    }
}

fn fill_amount(info: &SegmentInfo) -> String {
    match info.kind {
        Some(Kind::Mpmc) => format!("{} msg", info.used),
        _ => human(info.used),
    }
}

fn fill_text(info: &SegmentInfo) -> String {
    if info.kind.is_none() || info.capacity == 0 {
        return "-".into();
    }
    let pct = info.used as f64 * 100.0 / info.capacity as f64;
    match info.kind {
        Some(Kind::Mpmc) => format!("{}/{} ({pct:.0}%)", info.used, info.capacity),
        _ => format!("{} ({pct:.0}%)", human(info.used)),
    }
}

fn endpoints_text(info: &SegmentInfo) -> String {
    if info.endpoints.is_empty() {
        return "none".into();
    }
    info.endpoints
        .iter()
        .map(|e| {
            format!(
                "{} {} {} pid {}",
                e.role,
                e.index,
                state_name(e.state),
                e.pid
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn info_json(info: &SegmentInfo) -> Value {
    json!({
        "name": info.name,
        "path": format!("/dev/shm/{}{}", shmq::PREFIX, info.name),
        "ready": info.ready,
        "kind": info.kind.map(|k| k.to_string()),
        "capacity": info.capacity,
        "slot_size": info.slot_size,
        "largest_message": largest_message(info),
        "used": info.used,
        "file_size": info.file_size,
        "mode": format!("{:04o}", info.mode),
        "wake": info.wake.map(|b| b.to_string()).unwrap_or_default(),
        "poisoned": info.poisoned,
        "creator_pid": info.creator_pid,
        "stale": info.stale,
        "status": status(info),
        "endpoints": info.endpoints.iter().map(|e| json!({
            "role": e.role.to_string(),
            "index": e.index,
            "state": state_name(e.state),
            "pid": e.pid,
        })).collect::<Vec<_>>(),
    })
}

/// `shmq ls`: every segment in `/dev/shm` with its state.
pub fn ls(a: LsArgs) -> u8 {
    let names = match shmq::list() {
        Ok(n) => n,
        Err(e) => return fail("ls", FAILED, format!("cannot list /dev/shm: {e}")),
    };
    let found: Vec<(String, Result<SegmentInfo, OpenError>)> = names
        .into_iter()
        .map(|n| {
            let r = shmq::inspect(&n);
            (n, r)
        })
        .collect();
    if a.json {
        let rows: Vec<Value> = found
            .iter()
            .map(|(n, r)| match r {
                Ok(info) => info_json(info),
                Err(e) => json!({ "name": n, "error": e.to_string() }),
            })
            .collect();
        return emit("ls", &format!("{}\n", Value::Array(rows)));
    }
    if found.is_empty() {
        return emit("ls", "no shmq segments in /dev/shm\n");
    }
    let header = ["NAME", "KIND", "SIZE", "FILL", "STATUS", "ENDPOINTS"];
    let rows: Vec<[String; 6]> = found
        .iter()
        .map(|(n, r)| match r {
            Ok(info) => [
                n.clone(),
                info.kind.map_or("-".into(), |k| k.to_string()),
                size_text(info),
                fill_text(info),
                status(info),
                endpoints_text(info),
            ],
            Err(e) => [
                n.clone(),
                "?".into(),
                "-".into(),
                "-".into(),
                format!("unreadable: {e}"),
                "-".into(),
            ],
        })
        .collect();
    // Column widths; the last column is not padded.
    let mut w = header.map(str::len);
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            // Reasons for unreadable segments are long: do not widen for them.
            if i < 4 || (i == 4 && !cell.starts_with("unreadable")) {
                w[i] = w[i].max(cell.len());
            }
        }
    }
    let mut o = String::new();
    let mut line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            } else {
                s.push_str(c);
            }
        }
        say!(o, "{}", s.trim_end());
    };
    line(&header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    emit("ls", &o)
}

/// `shmq stat NAME`: one segment's header and endpoints.
pub fn stat(a: StatArgs) -> u8 {
    let info = match shmq::inspect(&a.name) {
        Ok(i) => i,
        Err(e) => return fail("stat", open_code(&e), e),
    };
    if a.json {
        return emit("stat", &format!("{}\n", info_json(&info)));
    }
    let mut o = String::new();
    let mut kv = |k: &str, v: String| {
        let line = format!("{:<15}{v}", format!("{k}:"));
        say!(o, "{}", line.trim_end());
    };
    kv("name", info.name.clone());
    kv("path", format!("/dev/shm/{}{}", shmq::PREFIX, info.name));
    kv("status", status(&info));
    if !info.ready {
        kv("file size", format!("{} bytes", info.file_size));
        kv("mode", format!("{:04o}", info.mode));
        return emit("stat", &o);
    }
    kv("kind", info.kind.map_or("-".into(), |k| k.to_string()));
    match info.kind {
        Some(Kind::Mpmc) => {
            kv("slots", info.capacity.to_string());
            kv(
                "slot size",
                format!("{} bytes (16-byte header included)", info.slot_size),
            );
            kv("fill", fill_text(&info));
        }
        _ => {
            kv(
                "capacity",
                format!("{} bytes ({})", info.capacity, human(info.capacity)),
            );
            kv("fill", format!("{} bytes, {}", info.used, fill_text(&info)));
        }
    }
    kv("largest msg", format!("{} bytes", largest_message(&info)));
    kv(
        "file size",
        format!("{} bytes ({})", info.file_size, human(info.file_size)),
    );
    kv("mode", format!("{:04o}", info.mode));
    kv("wake", info.wake.map(|b| b.to_string()).unwrap_or_default());
    kv("creator pid", info.creator_pid.to_string());
    kv("poisoned", if info.poisoned { "yes" } else { "no" }.into());
    let endpoints = if info.endpoints.is_empty() {
        "none"
    } else {
        ""
    };
    kv("endpoints", endpoints.into());
    for e in &info.endpoints {
        say!(
            o,
            "  {:<9}{:<4}{:<10}pid {}",
            e.role,
            e.index,
            state_name(e.state),
            e.pid
        );
    }
    emit("stat", &o)
}

/// `shmq rm NAME...`: removes segments, refusing live ones unless `--force`.
pub fn rm(a: RmArgs) -> u8 {
    let mut code = OK;
    let mut o = String::new();
    for name in &a.names {
        if let Err(e) = shmq::validate_name(name) {
            code = code.max(fail("rm", open_code(&e), e));
            continue;
        }
        if !a.force {
            match shmq::inspect(name) {
                Ok(info) if !info.stale => {
                    code = code.max(fail(
                        "rm",
                        UNUSABLE,
                        format!(
                            "segment {name:?} is in use ({}); stop those processes first, \
                             or remove it anyway with --force",
                            endpoints_text(&info)
                        ),
                    ));
                    continue;
                }
                Err(e @ OpenError::NotFound { .. }) => {
                    code = code.max(fail("rm", UNUSABLE, e));
                    continue;
                }
                // Stale, or unreadable (foreign, corrupted): remove.
                _ => {}
            }
        }
        match shmq::remove(name) {
            Ok(()) => say!(o, "removed {name}"),
            Err(e) => code = code.max(fail("rm", open_code(&e), e)),
        }
    }
    code.max(emit("rm", &o))
}

/// `shmq gc [NAME...]`: removes segments that no live process uses.
pub fn gc(a: GcArgs) -> u8 {
    let outcomes: Vec<(String, GcOutcome)> = if a.names.is_empty() && !a.dry_run {
        match shmq::gc() {
            Ok(o) => o,
            Err(e) => return fail("gc", FAILED, format!("cannot list /dev/shm: {e}")),
        }
    } else {
        let names = if a.names.is_empty() {
            match shmq::list() {
                Ok(n) => n,
                Err(e) => return fail("gc", FAILED, format!("cannot list /dev/shm: {e}")),
            }
        } else {
            a.names.clone()
        };
        names
            .into_iter()
            .map(|n| {
                let o = gc_one(&n, a.dry_run);
                (n, o)
            })
            .collect()
    };
    let (mut removed, mut kept, mut skipped) = (0, 0, 0);
    let verb = if a.dry_run { "would remove" } else { "removed" };
    let mut code = OK;
    let mut o = String::new();
    for (name, outcome) in &outcomes {
        match outcome {
            GcOutcome::Removed => {
                removed += 1;
                say!(o, "{verb} {name} (no live endpoint)");
            }
            GcOutcome::InUse => {
                kept += 1;
                say!(o, "kept    {name} (in use)");
            }
            GcOutcome::Skipped(e) => {
                skipped += 1;
                if let OpenError::Io { .. } = e {
                    code = FAILED;
                }
                say!(o, "skipped {name}: {e}");
            }
        }
    }
    say!(
        o,
        "gc: {verb} {removed}, kept {kept} in use, skipped {skipped} unreadable"
    );
    code.max(emit("gc", &o))
}

/// What `gc` does with one named segment (for `--dry-run` and name lists;
/// the same rule as [`shmq::gc`]). Removal is [`shmq::gc_one`], which
/// decides holding the segment's gate lock: a look with `inspect` followed
/// by `remove` would unlink a segment that a sender opened in between,
/// leaving it on a file nobody else can find.
fn gc_one(name: &str, dry_run: bool) -> GcOutcome {
    if !dry_run {
        return shmq::gc_one(name);
    }
    match shmq::inspect(name) {
        Ok(info) if info.stale => GcOutcome::Removed,
        Ok(_) => GcOutcome::InUse,
        Err(e) => GcOutcome::Skipped(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_endpoints_is_none() {
        let info = shmq::SegmentInfo {
            name: "x".into(),
            version: 1,
            ready: true,
            kind: Some(shmq::Kind::Spsc),
            capacity: 1024,
            slot_size: 0,
            max_producers: 1,
            max_consumers: 1,
            type_size: 0,
            type_align: 0,
            type_fingerprint: 0,
            producers_died: 0,
            used: 256,
            file_size: 4096,
            mode: 0o600,
            wake: Some(shmq::Backend::Futex),
            poisoned: false,
            creator_pid: 1,
            endpoints: vec![],
            stale: true,
        };
        assert_eq!(super::endpoints_text(&info), "none");
        assert_eq!(super::status(&info), "stale, 256 B unread");
        assert_eq!(super::fill_text(&info), "256 B (25%)");
        assert_eq!(super::largest_message(&info), 504);
    }
}
