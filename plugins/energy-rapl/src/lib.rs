//! `energy-rapl`: CPU energy counters from Linux powercap (RAPL).
//!
//! Intel CPUs, and AMD Zen through the same `intel_rapl` driver, expose one
//! powercap zone per socket (`package-N`), optionally with subzones (`core`,
//! `uncore`, `dram`), plus on many Intel clients a platform zone (`psys`).
//! Each zone directory holds `name`, `energy_uj` (a cumulative counter in µJ)
//! and `max_energy_range_uj` (the counter's top: values lie in
//! `[0, max_energy_range_uj]`, so its modulus is `max_energy_range_uj + 1`).
//!
//! The plugin walks the *devices* tree, `/sys/devices/virtual/powercap`, not
//! `/sys/class/powercap`: the class entries are symlinks into the devices
//! tree, and a sandbox that grants only the class directory sees links that
//! escape it.
//!
//! ```text
//! <root>/intel-rapl/intel-rapl:0/{name,energy_uj,max_energy_range_uj}   package-0
//! <root>/intel-rapl/intel-rapl:0/intel-rapl:0:0/...                      core
//! <root>/intel-rapl/intel-rapl:0/intel-rapl:0:2/...                      dram
//! <root>/intel-rapl/intel-rapl:1/...                                     psys
//! <root>/intel-rapl-mmio/intel-rapl-mmio:0/...                           package-0 (again)
//! ```
//!
//! A domain reported both through MSRs (`intel-rapl`) and MMIO
//! (`intel-rapl-mmio`) is read once, from the MSR zone.
//!
//! `read` returns the raw counters; the kernel computes deltas and wraps.
//! Every counter is opened, and read once, in `open`, so a missing permission
//! (`energy_uj` is root-only since Linux 5.10) is reported before a run starts.

use llem_sdk::{
    Config, Device, DeviceKind, EnergySource, ErrorCode, OptionSpec, OptionType, Plugin,
    PluginError, PluginInfo, PluginKind, Reading,
};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where the kernel puts powercap zones (the real directories, not the links).
pub const DEFAULT_ROOT: &str = "/sys/devices/virtual/powercap";

/// Powercap control types that carry RAPL zones, in order of preference: a
/// domain found under an earlier one is not read again from a later one.
const CONTROL_TYPES: &[&str] = &["intel-rapl", "intel-rapl-mmio"];

/// Domain names `domains` may filter on.
const KNOWN_DOMAINS: &[&str] = &["package", "core", "uncore", "dram", "psys"];

const CVE_NOTE: &str = "energy_uj is root-only since Linux 5.10 (CVE-2020-8694)";
const PERMISSION_HINT: &str = "run as root, or grant read access: sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj";

/// One powercap zone found in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Zone {
    /// Device id: `package-0`, `package-0-dram`, `psys`.
    id: String,
    /// The zone's `name` file: `package-0`, `dram`, `psys`.
    name: String,
    /// `intel-rapl:0:2`.
    zone: String,
    /// `intel-rapl` or `intel-rapl-mmio`.
    control: &'static str,
    kind: DeviceKind,
    /// `max_energy_range_uj`.
    max_energy_range_uj: u64,
    dir: PathBuf,
    /// Id of the zone whose energy already includes this one (see [`contain`]).
    parent: Option<String>,
}

impl Zone {
    /// The domain type `domains` filters on: `package` for `package-N`, else the name.
    fn domain(&self) -> &str {
        domain_of(&self.name)
    }

    fn energy_path(&self) -> PathBuf {
        self.dir.join("energy_uj")
    }

    fn device(&self) -> Device {
        Device {
            id: self.id.clone(),
            name: format!("RAPL {} ({})", self.id, self.zone),
            kind: self.kind,
            has_energy_counter: true,
            counter_wrap_uj: self.max_energy_range_uj.checked_add(1),
            has_power: false,
            power_average_window_ms: 0,
            estimated: false,
            parent: self.parent.clone(),
            max_power_w: None,
        }
    }
}

/// Which zone's energy already includes which, so the kernel counts it once.
/// A `core` or `uncore` subzone is part of its package (Intel SDM vol. 3B
/// 15.10: PP0/PP1 are power planes of the package; AMD Zen's core likewise).
/// `dram` is listed under the package in sysfs but is a separate domain, not
/// part of the package's energy. `psys` is the whole platform (Intel: "SoC and
/// the rest of the platform"), so it contains every package and DRAM domain.
/// `parent_id` is where sysfs nests the zone.
fn contain(zones: &mut [Zone]) {
    let psys = zones
        .iter()
        .find(|z| z.kind == DeviceKind::Psys)
        .map(|z| z.id.clone());
    for zone in zones.iter_mut() {
        // A subzone stays inside its package (an unknown one too: counting it
        // once inside is safer than twice), except DRAM.
        if zone.parent.is_some() && zone.kind != DeviceKind::Dram {
            continue;
        }
        zone.parent = match zone.kind {
            DeviceKind::Psys => None,
            _ => psys.clone(),
        };
    }
}

fn domain_of(name: &str) -> &str {
    match name.strip_prefix("package") {
        Some(rest) if rest.is_empty() || rest.starts_with('-') => "package",
        _ => name,
    }
}

fn kind_of(name: &str) -> DeviceKind {
    match domain_of(name) {
        "package" => DeviceKind::CpuPackage,
        "core" => DeviceKind::CpuCore,
        "uncore" => DeviceKind::CpuUncore,
        "dram" => DeviceKind::Dram,
        "psys" => DeviceKind::Psys,
        _ => DeviceKind::Other,
    }
}

/// The indices of a zone directory name: `intel-rapl:0:2` under control
/// type `intel-rapl` is `[0, 2]`.
fn zone_indices(control: &str, dir_name: &str) -> Option<Vec<u32>> {
    let rest = dir_name.strip_prefix(control)?.strip_prefix(':')?;
    rest.split(':').map(|part| part.parse().ok()).collect()
}

/// Parse a sysfs counter: decimal digits, optionally surrounded by whitespace.
fn parse_counter(bytes: &[u8]) -> Option<u64> {
    let text = bytes.trim_ascii();
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn read_text(path: &Path) -> Result<String, PluginError> {
    std::fs::read_to_string(path)
        .map_err(|e| PluginError::io(format_args!("cannot read {}", path.display()), &e))
}

fn read_number(path: &Path) -> Result<u64, PluginError> {
    let text = read_text(path)?;
    parse_counter(text.as_bytes()).ok_or_else(|| {
        PluginError::new(
            ErrorCode::Io,
            format!(
                "{} holds {:?}, not a number of microjoules",
                path.display(),
                text.trim()
            ),
        )
    })
}

/// The sub-directories of `dir` that are zones `depth` levels below the
/// control type (`parent` holds the indices of the enclosing zone), sorted by
/// index so that `intel-rapl:10` comes after `intel-rapl:2`.
fn child_zones(
    dir: &Path,
    control: &str,
    parent: &[u32],
) -> Result<Vec<(Vec<u32>, PathBuf)>, PluginError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| PluginError::io(format_args!("cannot list {}", dir.display()), &e))?;
    let mut zones = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| PluginError::io(format_args!("cannot list {}", dir.display()), &e))?;
        let file_name = entry.file_name();
        let Some(indices) = file_name
            .to_str()
            .and_then(|name| zone_indices(control, name))
        else {
            continue;
        };
        if indices.len() != parent.len() + 1 || !indices.starts_with(parent) {
            continue;
        }
        let path = entry.path();
        // Zones are real directories; a link that cannot be followed (in a
        // sandbox, one escaping the grant) is not a zone we can read.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            zones.push((indices, path));
        }
    }
    zones.sort();
    Ok(zones)
}

/// Every RAPL zone under `root`, packages before their subzones, MSR before
/// MMIO (a domain MMIO repeats is dropped).
fn discover(root: &Path) -> Result<Vec<Zone>, PluginError> {
    let mut found: Vec<Zone> = Vec::new();
    let mut unfollowable = None;
    for &control in CONTROL_TYPES {
        let control_dir = root.join(control);
        if !std::fs::metadata(&control_dir).is_ok_and(|m| m.is_dir()) {
            if std::fs::symlink_metadata(&control_dir).is_ok_and(|m| m.file_type().is_symlink()) {
                unfollowable.get_or_insert(control_dir);
            }
            continue;
        }
        for (indices, dir) in child_zones(&control_dir, control, &[])? {
            let Some(top) = zone(&dir, control, &indices, None)? else {
                continue;
            };
            let subzones = child_zones(&dir, control, &indices)?;
            let parent_id = push_unique(&mut found, top);
            for (sub_indices, sub_dir) in subzones {
                if let Some(sub) = zone(&sub_dir, control, &sub_indices, Some(&parent_id))? {
                    push_unique(&mut found, sub);
                }
            }
        }
    }
    contain(&mut found);
    match unfollowable {
        Some(link) if found.is_empty() => Err(escaping_link(root, &link)),
        _ => Ok(found),
    }
}

/// Add a zone unless an earlier control type (MSR before MMIO) already reported
/// its domain; two zones of one control type with the same name are both kept,
/// the later one numbered (`psys`, `psys-1`). Returns the zone's device id.
fn push_unique(found: &mut Vec<Zone>, mut zone: Zone) -> String {
    let base = zone.id.clone();
    if found
        .iter()
        .any(|z| z.id == base && z.control != zone.control)
    {
        return base;
    }
    let mut n = 0;
    while found.iter().any(|z| z.id == zone.id) {
        n += 1;
        zone.id = format!("{base}-{n}");
    }
    let id = zone.id.clone();
    found.push(zone);
    id
}

/// Read one zone directory; `None` if it has no energy counter (nothing to measure).
fn zone(
    dir: &Path,
    control: &'static str,
    indices: &[u32],
    parent_id: Option<&str>,
) -> Result<Option<Zone>, PluginError> {
    if std::fs::symlink_metadata(dir.join("energy_uj")).is_err() {
        return Ok(None);
    }
    let name = read_text(&dir.join("name"))?.trim().to_owned();
    if name.is_empty() {
        return Err(PluginError::new(
            ErrorCode::Io,
            format!("{} is empty", dir.join("name").display()),
        ));
    }
    let max_energy_range_uj = read_number(&dir.join("max_energy_range_uj"))?;
    let id = match parent_id {
        Some(parent) => format!("{parent}-{name}"),
        None => name.clone(),
    };
    let zone = format!(
        "{control}:{}",
        indices
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(":")
    );
    Ok(Some(Zone {
        id,
        kind: kind_of(&name),
        name,
        zone,
        control,
        max_energy_range_uj,
        dir: dir.to_owned(),
        parent: parent_id.map(str::to_owned),
    }))
}

fn escaping_link(root: &Path, link: &Path) -> PluginError {
    PluginError::unavailable(format!(
        "{} is a symbolic link the plugin cannot follow: the entries of /sys/class/powercap \
         link into {DEFAULT_ROOT}, outside a sandbox that grants only {}",
        link.display(),
        root.display()
    ))
    .with_hint(format!(
        "set `root` to {DEFAULT_ROOT} (the real directories)"
    ))
}

fn no_zones(root: &Path) -> PluginError {
    PluginError::unavailable(format!(
        "no RAPL zones under {}: RAPL energy counters exist only on Intel CPUs and AMD Zen \
         (through the Linux powercap driver intel_rapl), and not in most virtual machines",
        root.display()
    ))
    .with_hint(
        "on bare-metal Intel or AMD Zen, load the driver (sudo modprobe intel_rapl_msr) and \
         check `root`; in a VM, use energy-cpu-estimate (a labelled estimate) instead",
    )
}

fn permission_denied(path: &Path) -> PluginError {
    PluginError::new(
        ErrorCode::PermissionDenied,
        format!(
            "cannot read {}: permission denied. {CVE_NOTE}",
            path.display()
        ),
    )
    .with_hint(if path.to_string_lossy().contains("intel-rapl-mmio") {
        format!("{PERMISSION_HINT} /sys/class/powercap/intel-rapl-mmio:*/energy_uj")
    } else {
        PERMISSION_HINT.to_owned()
    })
}

/// Keep only the zones `domains` asks for (a domain type such as `dram`, or
/// a device id such as `package-1`); every entry must match something.
fn select(zones: Vec<Zone>, domains: &[String], root: &Path) -> Result<Vec<Zone>, PluginError> {
    if domains.is_empty() {
        return Ok(zones);
    }
    for wanted in domains {
        if zones
            .iter()
            .any(|z| z.domain() == wanted || z.id == *wanted)
        {
            continue;
        }
        let mut present: Vec<&str> = zones.iter().map(Zone::domain).collect();
        present.sort_unstable();
        present.dedup();
        let present = present.join(", ");
        if KNOWN_DOMAINS.contains(&wanted.as_str()) {
            return Err(PluginError::new(
                ErrorCode::Unavailable,
                format!(
                    "no `{wanted}` zone under {} (this machine has: {present})",
                    root.display()
                ),
            )
            .with_hint("remove it from `domains`; AMD Zen, for one, has no `dram` zone"));
        }
        return Err(PluginError::invalid_config(
            "domains",
            format!(
                "`{wanted}` is neither a RAPL domain ({}) nor a device id here (this machine has: {})",
                KNOWN_DOMAINS.join(", "),
                zones
                    .iter()
                    .map(|z| z.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(zones
        .into_iter()
        .filter(|z| domains.iter().any(|d| z.domain() == d || z.id == *d))
        .collect())
}

/// An open `energy_uj`, re-read from offset 0 on every sample.
struct Counter {
    path: PathBuf,
    file: File,
}

impl Counter {
    fn open(path: PathBuf) -> Result<Self, PluginError> {
        match File::open(&path) {
            Ok(file) => {
                let mut counter = Counter { path, file };
                // Some filesystems refuse at read, not open: find out now.
                counter.read().map_err(|e| {
                    if e.code == ErrorCode::PermissionDenied {
                        permission_denied(&counter.path)
                    } else {
                        e
                    }
                })?;
                Ok(counter)
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(permission_denied(&path))
            }
            Err(e) => Err(PluginError::io(
                format_args!("cannot open {}", path.display()),
                &e,
            )),
        }
    }

    fn read(&mut self) -> Result<u64, PluginError> {
        // Counters have at most 20 digits; sysfs hands the whole value (and a
        // newline) to the first read at offset 0.
        let mut buf = [0u8; 32];
        let mut len = 0;
        loop {
            let n = self.read_at(&mut buf[len..], len as u64).map_err(|e| {
                PluginError::io(format_args!("reading {}", self.path.display()), &e)
            })?;
            len += n;
            if n == 0 || len == buf.len() || buf[..len].ends_with(b"\n") {
                break;
            }
        }
        parse_counter(&buf[..len]).ok_or_else(|| {
            PluginError::new(
                ErrorCode::Io,
                format!(
                    "{} holds {:?}, not a number of microjoules",
                    self.path.display(),
                    String::from_utf8_lossy(buf[..len].trim_ascii())
                ),
            )
        })
    }

    #[cfg(unix)]
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.file, buf, offset)
    }

    #[cfg(not(unix))]
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        use std::io::{Read, Seek, SeekFrom};
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read(buf)
    }
}

pub struct Rapl {
    devices: Vec<Device>,
    counters: Vec<Counter>,
}

impl Plugin for Rapl {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "energy-rapl".into(),
            kind: PluginKind::Energy,
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "CPU package, core, uncore, DRAM and platform energy from Linux powercap (Intel RAPL, AMD Zen)"
                    .into(),
            options: vec![
                OptionSpec::with_default(
                    "root",
                    OptionType::Path,
                    DEFAULT_ROOT,
                    "Powercap devices tree (holding intel-rapl/ and intel-rapl-mmio/), granted to the plugin read-only; not /sys/class/powercap, whose entries are links out of it",
                ),
                OptionSpec::with_default(
                    "domains",
                    OptionType::StringList,
                    Vec::<String>::new(),
                    "Domains to measure: package, core, uncore, dram, psys, or device ids such as package-1; empty = all",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let root: String = config
            .optional("root")?
            .unwrap_or_else(|| DEFAULT_ROOT.to_owned());
        if root.is_empty() {
            return Err(PluginError::invalid_config(
                "root",
                "must name the powercap directory",
            ));
        }
        let domains: Vec<String> = config.optional("domains")?.unwrap_or_default();
        let root = PathBuf::from(root);
        let zones = discover(&root)?;
        if zones.is_empty() {
            return Err(no_zones(&root));
        }
        let mut zones = select(zones, &domains, &root)?;
        // A parent left out by `domains` measures nothing here: its children
        // then stand on their own in the totals.
        let kept: Vec<String> = zones.iter().map(|z| z.id.clone()).collect();
        for zone in &mut zones {
            if zone.parent.as_ref().is_some_and(|p| !kept.contains(p)) {
                zone.parent = None;
            }
        }
        let mut devices = Vec::with_capacity(zones.len());
        let mut counters = Vec::with_capacity(zones.len());
        for zone in &zones {
            counters.push(Counter::open(zone.energy_path())?);
            devices.push(zone.device());
        }
        llem_sdk::host::debug(&format!(
            "{} RAPL zones under {}: {}",
            devices.len(),
            root.display(),
            devices
                .iter()
                .map(|d| d.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(Rapl { devices, counters })
    }
}

impl EnergySource for Rapl {
    fn devices(&self) -> Vec<Device> {
        self.devices.clone()
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), PluginError> {
        out.reserve(self.counters.len());
        for (device, counter) in self.counters.iter_mut().enumerate() {
            out.push(Reading {
                device: device as u32,
                energy_uj: Some(counter.read()?),
                power_mw: None,
            });
        }
        Ok(())
    }
}

llem_sdk::export_energy!(Rapl);

#[cfg(test)]
mod tests;
