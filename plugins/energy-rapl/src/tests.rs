//! Native unit tests: the trait called directly on fake powercap trees.

#![allow(clippy::unwrap_used)] // a panic is a test failure

use super::*;
use std::path::Path;

/// Write one zone directory: `name`, `energy_uj`, `max_energy_range_uj`, and
/// the clutter real sysfs has beside them.
fn write_zone(dir: &Path, name: &str, energy_uj: u64, max_uj: u64) {
    std::fs::create_dir_all(dir.join("power")).unwrap();
    std::fs::write(dir.join("name"), format!("{name}\n")).unwrap();
    std::fs::write(dir.join("energy_uj"), format!("{energy_uj}\n")).unwrap();
    std::fs::write(dir.join("max_energy_range_uj"), format!("{max_uj}\n")).unwrap();
    std::fs::write(dir.join("enabled"), "1\n").unwrap();
    std::fs::write(dir.join("constraint_0_name"), "long_term\n").unwrap();
}

const INTEL_MAX: u64 = 262_143_328_850;
const DRAM_MAX: u64 = 65_712_999_613;

/// Two Intel sockets with core, uncore and dram subzones, and psys.
fn intel_tree(root: &Path) {
    let rapl = root.join("intel-rapl");
    std::fs::create_dir_all(&rapl).unwrap();
    std::fs::write(rapl.join("enabled"), "1\n").unwrap();
    for socket in 0..2u64 {
        let pkg = rapl.join(format!("intel-rapl:{socket}"));
        write_zone(&pkg, &format!("package-{socket}"), 1000 + socket, INTEL_MAX);
        for (i, (sub, max)) in [
            ("core", INTEL_MAX),
            ("uncore", INTEL_MAX),
            ("dram", DRAM_MAX),
        ]
        .into_iter()
        .enumerate()
        {
            write_zone(
                &pkg.join(format!("intel-rapl:{socket}:{i}")),
                sub,
                100 * (socket + 1) + i as u64,
                max,
            );
        }
    }
    write_zone(&rapl.join("intel-rapl:2"), "psys", 77, INTEL_MAX);
    #[cfg(unix)]
    std::os::unix::fs::symlink("/nonexistent/class/powercap", rapl.join("subsystem")).unwrap();
}

fn config(value: serde_json::Value) -> Config {
    Config::from_json(&value.to_string()).unwrap()
}

fn open(root: &Path, domains: &[&str]) -> Result<Rapl, PluginError> {
    Rapl::open(config(serde_json::json!({
        "root": root.to_str().unwrap(),
        "domains": domains,
    })))
}

fn ids(rapl: &Rapl) -> Vec<String> {
    rapl.devices().into_iter().map(|d| d.id).collect()
}

fn read(rapl: &mut Rapl) -> Vec<u64> {
    let mut out = Vec::new();
    rapl.read(&mut out).unwrap();
    assert!(out.iter().enumerate().all(|(i, r)| r.device == i as u32));
    assert!(out.iter().all(|r| r.power_mw.is_none()));
    out.into_iter().map(|r| r.energy_uj.unwrap()).collect()
}

#[test]
fn zone_names_and_counters_parse() {
    assert_eq!(zone_indices("intel-rapl", "intel-rapl:0"), Some(vec![0]));
    assert_eq!(
        zone_indices("intel-rapl", "intel-rapl:1:2"),
        Some(vec![1, 2])
    );
    assert_eq!(
        zone_indices("intel-rapl-mmio", "intel-rapl-mmio:0"),
        Some(vec![0])
    );
    assert_eq!(zone_indices("intel-rapl", "intel-rapl-mmio:0"), None);
    assert_eq!(zone_indices("intel-rapl", "intel-rapl"), None);
    assert_eq!(zone_indices("intel-rapl", "intel-rapl:"), None);
    assert_eq!(zone_indices("intel-rapl", "intel-rapl:x"), None);
    assert_eq!(parse_counter(b"262143328850\n"), Some(262_143_328_850));
    assert_eq!(parse_counter(b" 0 \n"), Some(0));
    assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_counter(b"18446744073709551616"), None);
    assert_eq!(parse_counter(b"-1"), None);
    assert_eq!(parse_counter(b"12 34"), None);
    assert_eq!(parse_counter(b"\n"), None);
    assert_eq!(domain_of("package-0"), "package");
    assert_eq!(domain_of("package-12"), "package");
    assert_eq!(domain_of("packages"), "packages");
    assert_eq!(kind_of("package-1"), DeviceKind::CpuPackage);
    assert_eq!(kind_of("core"), DeviceKind::CpuCore);
    assert_eq!(kind_of("uncore"), DeviceKind::CpuUncore);
    assert_eq!(kind_of("dram"), DeviceKind::Dram);
    assert_eq!(kind_of("psys"), DeviceKind::Psys);
    assert_eq!(kind_of("gpu"), DeviceKind::Other);
}

#[test]
fn describe_declares_root_and_domains() {
    let info = Rapl::describe();
    assert_eq!(info.name, "energy-rapl");
    assert_eq!(info.kind, PluginKind::Energy);
    let root = info.options.iter().find(|o| o.name == "root").unwrap();
    assert_eq!(root.ty, OptionType::Path);
    assert_eq!(root.default, Some(serde_json::json!(DEFAULT_ROOT)));
    let domains = info.options.iter().find(|o| o.name == "domains").unwrap();
    assert_eq!(domains.ty, OptionType::StringList);
    assert_eq!(domains.default, Some(serde_json::json!([])));
    assert_eq!(info.options.len(), 2);
}

#[test]
fn two_intel_sockets_with_subzones_and_psys() {
    let dir = tempfile::tempdir().unwrap();
    intel_tree(dir.path());
    let mut rapl = open(dir.path(), &[]).unwrap();
    assert_eq!(
        ids(&rapl),
        [
            "package-0",
            "package-0-core",
            "package-0-uncore",
            "package-0-dram",
            "package-1",
            "package-1-core",
            "package-1-uncore",
            "package-1-dram",
            "psys",
        ]
    );
    let devices = rapl.devices();
    let kinds: Vec<DeviceKind> = devices.iter().map(|d| d.kind).collect();
    use DeviceKind::*;
    assert_eq!(
        kinds,
        [
            CpuPackage, CpuCore, CpuUncore, Dram, CpuPackage, CpuCore, CpuUncore, Dram, Psys
        ]
    );
    for device in &devices {
        assert!(device.has_energy_counter);
        assert!(!device.has_power);
        assert!(!device.estimated);
        let max = if device.kind == Dram {
            DRAM_MAX
        } else {
            INTEL_MAX
        };
        assert_eq!(device.counter_wrap_uj, Some(max + 1), "{}", device.id);
    }
    assert_eq!(devices[3].name, "RAPL package-0-dram (intel-rapl:0:2)");
    assert_eq!(devices[8].name, "RAPL psys (intel-rapl:2)");
    assert_eq!(
        read(&mut rapl),
        [1000, 100, 101, 102, 1001, 200, 201, 202, 77]
    );
    // Raw counters, re-read every time (the file stays open).
    let pkg1 = dir.path().join("intel-rapl/intel-rapl:1/energy_uj");
    std::fs::write(&pkg1, "262143328850\n").unwrap();
    assert_eq!(read(&mut rapl)[4], 262_143_328_850);
    std::fs::write(&pkg1, "5\n").unwrap();
    assert_eq!(read(&mut rapl)[4], 5);
    assert!(rapl.telemetry().unwrap().is_empty());
}

#[test]
fn amd_zen_packages_with_core_subzones() {
    let dir = tempfile::tempdir().unwrap();
    let rapl = dir.path().join("intel-rapl");
    for socket in 0..2 {
        let pkg = rapl.join(format!("intel-rapl:{socket}"));
        write_zone(&pkg, &format!("package-{socket}"), 10, 65_712_999_613);
        write_zone(
            &pkg.join(format!("intel-rapl:{socket}:0")),
            "core",
            20,
            65_712_999_613,
        );
    }
    let rapl = open(dir.path(), &[]).unwrap();
    assert_eq!(
        ids(&rapl),
        ["package-0", "package-0-core", "package-1", "package-1-core"]
    );
    let err = open(dir.path(), &["dram"]).err().unwrap();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.contains("no `dram` zone"), "{err}");
    assert!(err.message.contains("core, package"), "{err}");
}

#[test]
fn zones_sort_by_number_not_text() {
    let dir = tempfile::tempdir().unwrap();
    let rapl = dir.path().join("intel-rapl");
    for socket in [10, 2, 0, 1] {
        write_zone(
            &rapl.join(format!("intel-rapl:{socket}")),
            &format!("package-{socket}"),
            socket,
            INTEL_MAX,
        );
    }
    let mut rapl = open(dir.path(), &[]).unwrap();
    assert_eq!(
        ids(&rapl),
        ["package-0", "package-1", "package-2", "package-10"]
    );
    assert_eq!(read(&mut rapl), [0, 1, 2, 10]);
}

#[test]
fn mmio_duplicates_are_dropped_in_favour_of_msr() {
    let dir = tempfile::tempdir().unwrap();
    write_zone(
        &dir.path().join("intel-rapl/intel-rapl:0"),
        "package-0",
        1,
        INTEL_MAX,
    );
    write_zone(
        &dir.path().join("intel-rapl/intel-rapl:0/intel-rapl:0:0"),
        "core",
        2,
        INTEL_MAX,
    );
    write_zone(
        &dir.path().join("intel-rapl/intel-rapl:1"),
        "psys",
        3,
        INTEL_MAX,
    );
    let mmio = dir.path().join("intel-rapl-mmio/intel-rapl-mmio:0");
    write_zone(&mmio, "package-0", 999, INTEL_MAX);
    // A domain only MMIO reports is kept.
    write_zone(&mmio.join("intel-rapl-mmio:0:0"), "dram", 4, DRAM_MAX);
    let mut rapl = open(dir.path(), &[]).unwrap();
    assert_eq!(
        ids(&rapl),
        ["package-0", "package-0-core", "psys", "package-0-dram"]
    );
    assert_eq!(read(&mut rapl), [1, 2, 3, 4]);
    assert_eq!(
        rapl.devices()[3].name,
        "RAPL package-0-dram (intel-rapl-mmio:0:0)"
    );
}

#[test]
fn domains_filter_by_type_or_id() {
    let dir = tempfile::tempdir().unwrap();
    intel_tree(dir.path());
    let rapl = open(dir.path(), &["dram"]).unwrap();
    assert_eq!(ids(&rapl), ["package-0-dram", "package-1-dram"]);
    let mut rapl = open(dir.path(), &["package", "psys"]).unwrap();
    assert_eq!(ids(&rapl), ["package-0", "package-1", "psys"]);
    assert_eq!(read(&mut rapl), [1000, 1001, 77]);
    let rapl = open(dir.path(), &["package-1", "package-0-dram"]).unwrap();
    assert_eq!(ids(&rapl), ["package-0-dram", "package-1"]);

    let err = open(dir.path(), &["gpu"]).err().unwrap();
    assert_eq!(err.code, ErrorCode::InvalidConfig);
    assert_eq!(err.key.as_deref(), Some("domains"));
    assert!(
        err.message.contains("`gpu` is neither a RAPL domain"),
        "{err}"
    );
    assert!(err.message.contains("package-1-uncore"), "{err}");
}

#[test]
fn no_powercap_tree_is_unavailable_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    for root in [dir.path().join("missing"), dir.path().to_owned()] {
        let err = open(&root, &[]).err().unwrap();
        assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
        assert!(
            err.message
                .starts_with(&format!("no RAPL zones under {}", root.display())),
            "{err}"
        );
        assert!(err.message.contains("Intel CPUs and AMD Zen"), "{err}");
        assert!(err.message.contains("virtual machines"), "{err}");
        assert!(
            err.hint
                .as_deref()
                .unwrap()
                .contains("modprobe intel_rapl_msr")
        );
    }
    // An empty intel-rapl directory (driver loaded, no zones) says the same.
    std::fs::create_dir_all(dir.path().join("intel-rapl")).unwrap();
    std::fs::write(dir.path().join("intel-rapl/enabled"), "0\n").unwrap();
    let err = open(dir.path(), &[]).err().unwrap();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.message.starts_with("no RAPL zones under"), "{err}");
}

#[test]
fn zones_without_a_counter_are_skipped_and_bad_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    intel_tree(dir.path());
    std::fs::remove_file(dir.path().join("intel-rapl/intel-rapl:2/energy_uj")).unwrap();
    let rapl = open(dir.path(), &[]).unwrap();
    assert_eq!(ids(&rapl).last().unwrap(), "package-1-dram");

    let max = dir
        .path()
        .join("intel-rapl/intel-rapl:1/max_energy_range_uj");
    std::fs::write(&max, "lots\n").unwrap();
    let err = open(dir.path(), &[]).err().unwrap();
    assert_eq!(err.code, ErrorCode::Io);
    assert!(
        err.message.contains("max_energy_range_uj holds \"lots\""),
        "{err}"
    );
    std::fs::write(&max, format!("{INTEL_MAX}\n")).unwrap();

    let energy = dir.path().join("intel-rapl/intel-rapl:1/energy_uj");
    std::fs::write(&energy, "").unwrap();
    let err = open(dir.path(), &[]).err().unwrap();
    assert_eq!(err.code, ErrorCode::Io);
    assert!(err.message.contains("not a number of microjoules"), "{err}");
}

#[test]
fn a_counter_that_turns_unreadable_mid_run_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    intel_tree(dir.path());
    let mut rapl = open(dir.path(), &["psys"]).unwrap();
    let energy = dir.path().join("intel-rapl/intel-rapl:2/energy_uj");
    std::fs::write(&energy, "garbage\n").unwrap();
    let mut out = Vec::new();
    let err = rapl.read(&mut out).unwrap_err();
    assert_eq!(err.code, ErrorCode::Io);
    assert!(err.message.contains(&energy.display().to_string()), "{err}");
}

#[cfg(unix)]
#[test]
fn the_class_tree_of_links_works_natively() {
    // /sys/class/powercap/intel-rapl:N[:M] link into the devices tree; a
    // native build may follow them (a sandboxed one may not: see the
    // integration tests).
    let dir = tempfile::tempdir().unwrap();
    let devices = dir.path().join("devices/virtual/powercap");
    intel_tree(&devices);
    let class = dir.path().join("class/powercap");
    std::fs::create_dir_all(&class).unwrap();
    std::os::unix::fs::symlink(
        "../../devices/virtual/powercap/intel-rapl",
        class.join("intel-rapl"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../../devices/virtual/powercap/intel-rapl/intel-rapl:0",
        class.join("intel-rapl:0"),
    )
    .unwrap();
    assert_eq!(
        ids(&open(&class, &[]).unwrap()),
        ids(&open(&devices, &[]).unwrap())
    );
}

#[cfg(unix)]
#[test]
fn an_unreadable_counter_is_permission_denied_with_the_cve() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    intel_tree(dir.path());
    let energy = dir
        .path()
        .join("intel-rapl/intel-rapl:0/intel-rapl:0:2/energy_uj");
    std::fs::set_permissions(&energy, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::metadata(dir.path()).unwrap().uid() == 0 {
        // root reads a 000 file anyway; the integration tests drop privileges.
        return;
    }
    let err = open(dir.path(), &[]).err().unwrap();
    assert_eq!(err.code, ErrorCode::PermissionDenied);
    assert_eq!(
        err.message,
        format!(
            "cannot read {}: permission denied. energy_uj is root-only since Linux 5.10 (CVE-2020-8694)",
            energy.display()
        )
    );
    assert_eq!(err.hint.as_deref(), Some(PERMISSION_HINT));
    // Filtering it out leaves the rest readable.
    assert_eq!(ids(&open(dir.path(), &["package"]).unwrap()).len(), 2);
}

#[test]
fn same_named_zones_of_one_control_type_are_both_kept() {
    // Not expected on real hardware, but measuring both beats dropping one.
    let dir = tempfile::tempdir().unwrap();
    let rapl = dir.path().join("intel-rapl");
    write_zone(&rapl.join("intel-rapl:0"), "package-0", 1, INTEL_MAX);
    write_zone(&rapl.join("intel-rapl:1"), "psys", 2, INTEL_MAX);
    write_zone(&rapl.join("intel-rapl:2"), "psys", 3, INTEL_MAX);
    let mut rapl = open(dir.path(), &[]).unwrap();
    assert_eq!(ids(&rapl), ["package-0", "psys", "psys-1"]);
    assert_eq!(read(&mut rapl), [1, 2, 3]);
    assert_eq!(
        ids(&open(dir.path(), &["psys"]).unwrap()),
        ["psys", "psys-1"]
    );
}

#[cfg(unix)]
#[test]
fn an_unreadable_mmio_counter_hints_at_the_mmio_files() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("intel-rapl-mmio/intel-rapl-mmio:0");
    write_zone(&zone, "package-0", 1, INTEL_MAX);
    let energy = zone.join("energy_uj");
    std::fs::set_permissions(&energy, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::metadata(dir.path()).unwrap().uid() == 0 {
        return;
    }
    let err = open(dir.path(), &[]).err().unwrap();
    assert_eq!(err.code, ErrorCode::PermissionDenied);
    assert!(
        err.hint
            .as_deref()
            .unwrap()
            .ends_with(" /sys/class/powercap/intel-rapl-mmio:*/energy_uj"),
        "{err}"
    );
}
