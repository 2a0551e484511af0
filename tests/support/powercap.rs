//! A fake Linux powercap tree shaped exactly like sysfs: real zone
//! directories under `sys/devices/virtual/powercap`, and `sys/class/powercap`
//! entries that are relative symbolic links into them (with `subsystem` links
//! pointing back out, as the kernel makes them).

#![allow(clippy::unwrap_used)] // test support: a panic is a test failure

use llem::Sandbox;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// `max_energy_range_uj` of an Intel package zone.
pub const INTEL_MAX: u64 = 262_143_328_850;
/// `max_energy_range_uj` of an Intel DRAM zone.
pub const INTEL_DRAM_MAX: u64 = 65_712_999_613;
/// `max_energy_range_uj` of an AMD Zen zone.
pub const AMD_MAX: u64 = 65_712_999_613;

/// A fake `/sys` under /tmp, traversable by every user (the permission test
/// reads it as `nobody`).
pub struct FakeSys {
    dir: tempfile::TempDir,
}

impl Default for FakeSys {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSys {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("llem-rapl-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sys = FakeSys { dir };
        std::fs::create_dir_all(sys.devices()).unwrap();
        std::fs::create_dir_all(sys.class()).unwrap();
        sys
    }

    /// The directory that holds the fake `sys/`.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `/sys/devices/virtual/powercap`: what the plugin's `root` names.
    pub fn devices(&self) -> PathBuf {
        self.dir.path().join("sys/devices/virtual/powercap")
    }

    /// `/sys/class/powercap`: links only.
    pub fn class(&self) -> PathBuf {
        self.dir.path().join("sys/class/powercap")
    }

    /// The control type directory (`intel-rapl`, `intel-rapl-mmio`), its
    /// `enabled` file, its class link and its `subsystem` link back out.
    pub fn control(&self, control: &str) -> PathBuf {
        let dir = self.devices().join(control);
        if !dir.exists() {
            std::fs::create_dir_all(dir.join("power")).unwrap();
            std::fs::write(dir.join("enabled"), "1\n").unwrap();
            symlink("../../../../class/powercap", dir.join("subsystem")).unwrap();
            symlink(
                format!("../../devices/virtual/powercap/{control}"),
                self.class().join(control),
            )
            .unwrap();
        }
        dir
    }

    /// One zone, `intel-rapl:0` or `intel-rapl:0:2`, nested under its parent
    /// like sysfs, with its class link. Returns the zone directory.
    pub fn zone(
        &self,
        control: &str,
        indices: &[u32],
        name: &str,
        energy: u64,
        max: u64,
    ) -> PathBuf {
        let mut dir = self.control(control);
        let mut relative = format!("../../devices/virtual/powercap/{control}");
        for depth in 1..=indices.len() {
            let part = format!(
                "{control}:{}",
                indices[..depth]
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(":")
            );
            dir = dir.join(&part);
            relative = format!("{relative}/{part}");
        }
        std::fs::create_dir_all(dir.join("power")).unwrap();
        std::fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        std::fs::write(dir.join("energy_uj"), format!("{energy}\n")).unwrap();
        std::fs::write(dir.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
        std::fs::write(dir.join("enabled"), "1\n").unwrap();
        std::fs::write(dir.join("constraint_0_name"), "long_term\n").unwrap();
        // Depth from the zone directory up to sys/: devices/virtual/powercap/<control>/<zones...>.
        let up = "../".repeat(4 + indices.len());
        symlink(format!("{up}class/powercap"), dir.join("subsystem")).unwrap();
        let link = self.class().join(dir.file_name().unwrap());
        symlink(relative, link).unwrap();
        dir
    }

    /// Rewrite a zone's counter in place (the plugin keeps the file open).
    pub fn set(&self, zone: &Path, energy: u64) {
        std::fs::write(zone.join("energy_uj"), format!("{energy}\n")).unwrap();
    }

    /// Two Intel sockets, each with core, uncore and dram, plus psys.
    pub fn intel_two_sockets() -> (Self, Vec<PathBuf>) {
        let sys = FakeSys::new();
        let mut zones = Vec::new();
        for socket in 0..2u32 {
            let base = 1_000_000 * (u64::from(socket) + 1);
            zones.push(sys.zone(
                "intel-rapl",
                &[socket],
                &format!("package-{socket}"),
                base,
                INTEL_MAX,
            ));
            for (i, (name, max)) in [
                ("core", INTEL_MAX),
                ("uncore", INTEL_MAX),
                ("dram", INTEL_DRAM_MAX),
            ]
            .into_iter()
            .enumerate()
            {
                zones.push(sys.zone(
                    "intel-rapl",
                    &[socket, i as u32],
                    name,
                    base + 1 + i as u64,
                    max,
                ));
            }
        }
        zones.push(sys.zone("intel-rapl", &[2], "psys", 42, INTEL_MAX));
        (sys, zones)
    }

    /// AMD Zen: two packages, each with a core subzone, no dram.
    pub fn amd_zen() -> (Self, Vec<PathBuf>) {
        let sys = FakeSys::new();
        let mut zones = Vec::new();
        for socket in 0..2u32 {
            zones.push(sys.zone(
                "intel-rapl",
                &[socket],
                &format!("package-{socket}"),
                10 + u64::from(socket),
                AMD_MAX,
            ));
            zones.push(sys.zone(
                "intel-rapl",
                &[socket, 0],
                "core",
                20 + u64::from(socket),
                AMD_MAX,
            ));
        }
        (sys, zones)
    }

    pub fn sandbox(&self) -> Sandbox {
        Sandbox {
            read_dirs: vec![self.devices()],
            ..Sandbox::default()
        }
    }
}
