//! `energy-redfish`: chassis power from a Redfish BMC, over a network grant.
//!
//! For each chassis (`/redfish/v1/Chassis/<id>`, discovered from the Chassis
//! collection unless `chassis` names them) the plugin reads, in order of
//! preference:
//!
//! - `EnvironmentMetrics` (Redfish 2020.4 and later): `PowerWatts.Reading`
//!   (W) and, when present, `EnergykWh.Reading` (a cumulative kWh counter,
//!   handed to the kernel in µJ: a device with an energy counter);
//! - the legacy `Power` resource (deprecated in 2020.4, still what most BMCs
//!   serve): `PowerControl[0].PowerConsumedWatts` (W).
//!
//! `PowerSubsystem` (2020.4) holds the power supplies and capacity, not the
//! chassis reading: the reading lives in `EnvironmentMetrics`.
//!
//! ## Sampling limits
//!
//! BMCs refresh these readings slowly (typically every 1–10 s, some every
//! 30–60 s) and answer an HTTP request in tens to hundreds of ms. So:
//!
//! - the plugin asks the BMC at most once per `poll_ms` (default 1000 ms); a
//!   kernel read in between returns no reading (not a repeated one);
//! - a value seen again is not a new sample: a reading is handed over only
//!   when the BMC's value changed, or when `refresh_s` (the BMC's declared
//!   refresh period) has passed since the last one handed over (steady power,
//!   confirmed once per refresh). The kernel integrates power trapezoidally
//!   between the readings it gets, so the energy is the linear interpolation
//!   between BMC samples, each placed when llem first saw it (up to `poll_ms`
//!   late); a step in power is spread over one refresh period;
//! - each device declares `power_average_window_ms = refresh_s × 1000`, and
//!   the quality verdict labels a source refreshing slower than once a second
//!   (`slow_refresh`) and grades the window against the refresh period.
//!
//! `EnergykWh` is as coarse as the BMC prints it (0.001 kWh = 3.6 kJ is
//! common): `energy_counter = false` integrates `PowerWatts` instead.
//!
//! ## Errors
//!
//! A failed request in `read` is an error for the kernel to record; the next
//! read tries again at once (not after `poll_ms`), so a BMC that keeps failing
//! is given up after the kernel's limit of failures in a row, and a single
//! failure costs one reading.

use http_common as http;
use http_common::{Client, Failure, Url};
use llem_sdk::{
    Config, Device, DeviceKind, EnergySource, ErrorCode, OptionSpec, OptionType, Plugin,
    PluginError, PluginInfo, PluginKind, Reading,
};
use serde_json::Value;
use std::time::Duration;

pub const SERVICE_ROOT: &str = "/redfish/v1/";
const DEFAULT_CHASSIS_COLLECTION: &str = "/redfish/v1/Chassis";
pub const DEFAULT_REFRESH_S: f64 = 5.0;
pub const DEFAULT_POLL_MS: i64 = 1000;
pub const DEFAULT_TIMEOUT_MS: i64 = 3000;
/// µJ in one kWh.
const UJ_PER_KWH: f64 = 3.6e12;

/// Where one chassis's reading comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    /// `EnvironmentMetrics`: `PowerWatts`, and `EnergykWh` when `energy`.
    Environment { path: String, energy: bool },
    /// Legacy `Power`: `PowerControl[0].PowerConsumedWatts`.
    Power { path: String },
}

impl Resource {
    fn path(&self) -> &str {
        match self {
            Resource::Environment { path, .. } | Resource::Power { path } => path,
        }
    }
}

#[derive(Debug, Clone)]
struct Chassis {
    device: Device,
    resource: Resource,
    /// The last reading handed to the kernel, and when (host monotonic ns).
    last: Option<(Reading, u64)>,
}

pub struct Redfish {
    client: Client,
    chassis: Vec<Chassis>,
    refresh_ns: u64,
    poll_ns: u64,
    /// When the next read may ask the BMC; `None`: at once.
    next_fetch_ns: Option<u64>,
}

/// The BMC's address: `http://host[:port]` (the shared parser), with no
/// path, since the plugin starts at `/redfish/v1/`; and, since most BMCs
/// serve Redfish over HTTPS only, `https://` refused with the proxy to use.
pub fn parse_url(text: &str) -> Result<Url, PluginError> {
    let url = http::parse_url(text).map_err(|e| {
        if e.message.contains("plain HTTP only") {
            let message = format!("{}, and most BMCs serve Redfish over HTTPS", e.message);
            PluginError { message, ..e }
        } else {
            e
        }
    })?;
    if !url.path.is_empty() {
        return Err(PluginError::invalid_config(
            "url",
            format!(
                "{text}: give the BMC's address without a path (the plugin starts at /redfish/v1/)"
            ),
        ));
    }
    Ok(url)
}

/// One answer's JSON, or an error naming the resource.
fn get_json(client: &Client, path: &str, what: &str) -> Result<Value, PluginError> {
    let url = client.url.to_http(path);
    let headers = [("Accept", "application/json"), ("OData-Version", "4.0")];
    let response = match client.get(path, &headers) {
        Ok(r) => r,
        Err(Failure::Connect(e)) => {
            return Err(http::connect_error(
                &client.url,
                &e,
                "the BMC's Redfish service",
            ));
        }
        Err(Failure::Exchange(message)) => {
            return Err(
                PluginError::new(ErrorCode::Io, format!("GET {url} ({what}): {message}"))
                    .with_hint("check that `url` is the BMC's Redfish service (plain HTTP)"),
            );
        }
    };
    let status = format!("{} {}", response.status, response.reason.trim());
    match response.status {
        200..=299 => {}
        401 => {
            return Err(PluginError::new(
                ErrorCode::PermissionDenied,
                format!("GET {url} ({what}) answered {status}: the BMC wants credentials, or refused these"),
            )
            .with_hint(
                "set `username` and `password_env` (the name of an environment variable holding the \
                 password, granted with [plugins.<instance>.sandbox] env = [\"THAT_NAME\"]); check the \
                 account on the BMC",
            ));
        }
        403 => {
            return Err(PluginError::new(
                ErrorCode::PermissionDenied,
                format!("GET {url} ({what}) answered {status}: the account may not read it"),
            )
            .with_hint(
                "use an account with the Redfish `Login` privilege (a read-only operator role)",
            ));
        }
        404 => {
            return Err(PluginError::new(
                ErrorCode::Unavailable,
                format!("GET {url} answered {status}: the BMC has no {what}"),
            )
            .with_hint(format!(
                "list what it has: curl {}; leave `chassis` empty to use every chassis that reports power",
                client.url.to_http(DEFAULT_CHASSIS_COLLECTION)
            )));
        }
        _ => {
            return Err(PluginError::new(
                ErrorCode::Io,
                format!("GET {url} ({what}) answered {status}"),
            )
            .with_hint(
                "BMCs answer 5xx when busy or while their management controller restarts; \
                 a larger `poll_ms` asks less often",
            ));
        }
    }
    serde_json::from_slice(&response.body).map_err(|e| {
        let start =
            String::from_utf8_lossy(&response.body[..response.body.len().min(80)]).into_owned();
        PluginError::new(
            ErrorCode::Io,
            format!("GET {url} ({what}): the body is not JSON ({e}); it begins {start:?}"),
        )
    })
}

/// `obj[key]["@odata.id"]`.
fn link<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key)?.get("@odata.id")?.as_str()
}

/// A number of watts as milliwatts; refuses what is not a power.
fn watts_to_mw(watts: &Value, field: &str) -> Result<u64, String> {
    match watts.as_f64() {
        Some(w) if (0.0..1e12).contains(&w) => Ok((w * 1000.0).round() as u64),
        _ if watts.is_null() => Err(format!("{field} is null: the BMC has no reading now")),
        _ => Err(format!("{field} is {watts}, not a power in watts")),
    }
}

fn kwh_to_uj(kwh: &Value) -> Result<u64, String> {
    match kwh.as_f64() {
        Some(k) if k.is_finite() && k >= 0.0 && k * UJ_PER_KWH < 1.8e19 => {
            Ok((k * UJ_PER_KWH).round() as u64)
        }
        _ if kwh.is_null() => Err("EnergykWh.Reading is null: the BMC has no reading now".into()),
        _ => Err(format!("EnergykWh.Reading is {kwh}, not an energy in kWh")),
    }
}

/// The reading of one chassis out of its resource's JSON.
fn reading_of(resource: &Resource, device: u32, json: &Value) -> Result<Reading, String> {
    match resource {
        Resource::Environment { energy, .. } => {
            let power = watts_to_mw(
                json.pointer("/PowerWatts/Reading").unwrap_or(&Value::Null),
                "PowerWatts.Reading",
            )?;
            let energy_uj = if *energy {
                Some(kwh_to_uj(
                    json.pointer("/EnergykWh/Reading").unwrap_or(&Value::Null),
                )?)
            } else {
                None
            };
            Ok(Reading {
                device,
                energy_uj,
                power_mw: Some(power),
            })
        }
        Resource::Power { .. } => {
            let power = watts_to_mw(
                json.pointer("/PowerControl/0/PowerConsumedWatts")
                    .unwrap_or(&Value::Null),
                "PowerControl[0].PowerConsumedWatts",
            )?;
            Ok(Reading {
                device,
                energy_uj: None,
                power_mw: Some(power),
            })
        }
    }
}

/// Which resource of this chassis carries a reading, if any.
fn find_resource(
    client: &Client,
    chassis: &Value,
    id: &str,
    use_counter: bool,
) -> Result<Option<Resource>, PluginError> {
    if let Some(path) = link(chassis, "EnvironmentMetrics") {
        let json = get_json(
            client,
            path,
            &format!("EnvironmentMetrics of chassis `{id}`"),
        )?;
        if json
            .pointer("/PowerWatts/Reading")
            .is_some_and(Value::is_number)
        {
            let energy = use_counter
                && json
                    .pointer("/EnergykWh/Reading")
                    .is_some_and(Value::is_number);
            return Ok(Some(Resource::Environment {
                path: path.to_owned(),
                energy,
            }));
        }
    }
    if let Some(path) = link(chassis, "Power") {
        let json = get_json(client, path, &format!("Power resource of chassis `{id}`"))?;
        if json
            .pointer("/PowerControl/0/PowerConsumedWatts")
            .is_some_and(Value::is_number)
        {
            return Ok(Some(Resource::Power {
                path: path.to_owned(),
            }));
        }
    }
    Ok(None)
}

fn password(config: &Config) -> Result<Option<String>, PluginError> {
    let name: String = config.optional("password_env")?.unwrap_or_default();
    if name.is_empty() {
        return Ok(None);
    }
    match std::env::var(&name) {
        Ok(p) => Ok(Some(p)),
        Err(_) => Err(PluginError::invalid_config(
            "password_env",
            format!("the environment variable {name} is not set, or not granted to the plugin"),
        )
        .with_hint(format!(
            "export {name}=... before llem runs, and grant it: [plugins.<instance>.sandbox] env = [\"{name}\"]"
        ))),
    }
}

impl Plugin for Redfish {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "energy-redfish".into(),
            kind: PluginKind::Energy,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Chassis power (and energy) from a Redfish BMC over plain HTTP, through a network grant; BMCs refresh every few seconds".into(),
            options: vec![
                OptionSpec::required(
                    "url",
                    OptionType::String,
                    "The BMC's Redfish service, http://host[:port] (no TLS: put a TLS-terminating proxy in front of an https BMC); grant it with sandbox.connect = [\"host:port\"]",
                ),
                OptionSpec::with_default(
                    "chassis",
                    OptionType::StringList,
                    Vec::<String>::new(),
                    "Chassis ids to measure (as in /redfish/v1/Chassis/<id>); empty = every chassis that reports power",
                ),
                OptionSpec::with_default(
                    "username",
                    OptionType::String,
                    "",
                    "HTTP Basic user; empty = no credentials",
                ),
                OptionSpec::with_default(
                    "password_env",
                    OptionType::String,
                    "",
                    "Name of the environment variable holding the password (grant it with sandbox.env = [\"NAME\"])",
                ),
                OptionSpec::with_default(
                    "refresh_s",
                    OptionType::Float,
                    DEFAULT_REFRESH_S,
                    "How often the BMC refreshes its reading, s (see its documentation; 1-10 s is common): an unchanged value is handed over again only this often, and the verdict judges the window against it",
                ),
                OptionSpec::with_default(
                    "poll_ms",
                    OptionType::Integer,
                    DEFAULT_POLL_MS,
                    "Ask the BMC at most this often, ms; a change is seen up to this late",
                ),
                OptionSpec::with_default(
                    "timeout_ms",
                    OptionType::Integer,
                    DEFAULT_TIMEOUT_MS,
                    "Limit on one HTTP request (connect, send, answer), ms",
                ),
                OptionSpec::with_default(
                    "energy_counter",
                    OptionType::Boolean,
                    true,
                    "Use EnvironmentMetrics' EnergykWh counter when the BMC has one (false: integrate PowerWatts; the counter is often printed to 0.001 kWh = 3.6 kJ)",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let url: String = config.require("url")?;
        let url = parse_url(&url)?;
        let username: String = config.optional("username")?.unwrap_or_default();
        let password = password(&config)?;
        if username.is_empty() && password.is_some() {
            return Err(PluginError::invalid_config(
                "username",
                "a password is set (`password_env`) but no username",
            ));
        }
        let refresh_s: f64 = config.optional("refresh_s")?.unwrap_or(DEFAULT_REFRESH_S);
        if !(refresh_s.is_finite() && (0.01..=3600.0).contains(&refresh_s)) {
            return Err(PluginError::invalid_config(
                "refresh_s",
                format!("must be 0.01 to 3600 s, found {refresh_s}"),
            ));
        }
        let poll_ms = http::milliseconds(&config, "poll_ms", DEFAULT_POLL_MS, 1)?;
        let timeout_ms = http::milliseconds(&config, "timeout_ms", DEFAULT_TIMEOUT_MS, 1)?;
        let use_counter: bool = config.optional("energy_counter")?.unwrap_or(true);
        let wanted: Vec<String> = config.optional("chassis")?.unwrap_or_default();

        let credentials =
            (!username.is_empty()).then(|| (username.as_str(), password.as_deref().unwrap_or("")));
        let client = Client::new(
            url.clone(),
            concat!("llem-energy-redfish/", env!("CARGO_PKG_VERSION")),
            credentials,
            Duration::from_millis(timeout_ms),
        );

        let root = get_json(&client, SERVICE_ROOT, "Redfish service root")?;
        let collection = link(&root, "Chassis").unwrap_or(DEFAULT_CHASSIS_COLLECTION);
        let paths: Vec<String> = if wanted.is_empty() {
            let members = get_json(&client, collection, "Chassis collection")?;
            members
                .get("Members")
                .and_then(Value::as_array)
                .map(|m| {
                    m.iter()
                        .filter_map(|e| e.get("@odata.id").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            wanted
                .iter()
                .map(|id| format!("{}/{id}", collection.trim_end_matches('/')))
                .collect()
        };

        let mut found: Vec<(Chassis, String, Option<String>)> = Vec::new();
        let mut without: Vec<String> = Vec::new();
        for path in &paths {
            let last_segment = path
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(path);
            let json = get_json(&client, path, &format!("chassis `{last_segment}`"))?;
            let id = json
                .get("Id")
                .and_then(Value::as_str)
                .unwrap_or(last_segment)
                .to_owned();
            let Some(resource) = find_resource(&client, &json, &id, use_counter)? else {
                if !wanted.is_empty() {
                    return Err(PluginError::unavailable(format!(
                        "chassis `{id}` reports no power: neither EnvironmentMetrics with PowerWatts \
                         nor Power with PowerControl[0].PowerConsumedWatts"
                    ))
                    .with_hint("name a chassis that does in `chassis`, or leave it empty to find them"));
                }
                without.push(id);
                continue;
            };
            let name = json
                .get("Name")
                .and_then(Value::as_str)
                .unwrap_or("chassis");
            let has_energy = matches!(resource, Resource::Environment { energy: true, .. });
            let device = Device {
                id: id.clone(),
                name: format!("Redfish chassis {id} ({name}) at {}", url.authority()),
                kind: DeviceKind::System,
                has_energy_counter: has_energy,
                counter_wrap_uj: None,
                has_power: true,
                power_average_window_ms: (refresh_s * 1000.0).round() as u32,
                estimated: false,
                parent: None,
                max_power_w: None,
            };
            let contained_by = json
                .pointer("/Links/ContainedBy/@odata.id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            found.push((
                Chassis {
                    device,
                    resource,
                    last: None,
                },
                path.trim_end_matches('/').to_owned(),
                contained_by,
            ));
        }
        if found.is_empty() {
            return Err(PluginError::unavailable(format!(
                "no chassis at {} reports power (checked: {}): none has EnvironmentMetrics with \
                 PowerWatts or Power with PowerConsumedWatts",
                url.authority(),
                if without.is_empty() {
                    "none listed".to_owned()
                } else {
                    without.join(", ")
                }
            )));
        }
        // A chassis inside another measured one (a blade in its enclosure):
        // the enclosure's figure includes it, so totals count it once.
        let ids: Vec<(String, String)> = found
            .iter()
            .map(|(c, path, _)| (path.clone(), c.device.id.clone()))
            .collect();
        let chassis: Vec<Chassis> = found
            .into_iter()
            .map(|(mut c, _, contained_by)| {
                c.device.parent = contained_by.and_then(|p| {
                    let p = p.trim_end_matches('/');
                    ids.iter()
                        .find(|(path, _)| path == p)
                        .map(|(_, id)| id.clone())
                });
                c
            })
            .collect();
        llem_sdk::host::debug(&format!(
            "Redfish at {}: {} (refresh {refresh_s} s, poll {poll_ms} ms){}",
            url.authority(),
            chassis
                .iter()
                .map(|c| format!("{} from {}", c.device.id, c.resource.path()))
                .collect::<Vec<_>>()
                .join(", "),
            if without.is_empty() {
                String::new()
            } else {
                format!("; without power: {}", without.join(", "))
            }
        ));
        Ok(Redfish {
            client,
            chassis,
            refresh_ns: (refresh_s * 1e9) as u64,
            poll_ns: poll_ms * 1_000_000,
            next_fetch_ns: None,
        })
    }
}

impl Redfish {
    fn fetch(&self, index: usize) -> Result<Reading, PluginError> {
        let c = &self.chassis[index];
        let what = match c.resource {
            Resource::Environment { .. } => "EnvironmentMetrics",
            Resource::Power { .. } => "Power resource",
        };
        let json = get_json(
            &self.client,
            c.resource.path(),
            &format!("{what} of chassis `{}`", c.device.id),
        )?;
        reading_of(&c.resource, index as u32, &json).map_err(|message| {
            PluginError::new(
                ErrorCode::Io,
                format!(
                    "{} (chassis `{}`): {message}",
                    self.client.url.to_http(c.resource.path()),
                    c.device.id
                ),
            )
        })
    }
}

/// Whether a fetched reading is a new sample: the value changed, or a
/// refresh period passed since the last one handed over.
fn is_new_sample(
    last: Option<&(Reading, u64)>,
    fresh: &Reading,
    now_ns: u64,
    refresh_ns: u64,
) -> bool {
    match last {
        None => true,
        Some((previous, at)) => {
            previous.power_mw != fresh.power_mw
                || previous.energy_uj != fresh.energy_uj
                || now_ns.saturating_sub(*at) >= refresh_ns
        }
    }
}

impl EnergySource for Redfish {
    fn devices(&self) -> Vec<Device> {
        self.chassis.iter().map(|c| c.device.clone()).collect()
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), PluginError> {
        let now = llem_sdk::host::monotonic_now_ns();
        if self.next_fetch_ns.is_some_and(|next| now < next) {
            return Ok(());
        }
        // On failure the next read asks again at once.
        self.next_fetch_ns = None;
        let mut fresh = Vec::with_capacity(self.chassis.len());
        for index in 0..self.chassis.len() {
            fresh.push(self.fetch(index)?);
        }
        self.next_fetch_ns = Some(now + self.poll_ns);
        for (c, reading) in self.chassis.iter_mut().zip(fresh) {
            if is_new_sample(c.last.as_ref(), &reading, now, self.refresh_ns) {
                c.last = Some((reading, now));
                out.push(reading);
            }
        }
        Ok(())
    }
}

llem_sdk::export_energy!(Redfish);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn the_bmc_url_has_no_path_and_https_says_why() {
        assert_eq!(
            parse_url("http://bmc:8000/").unwrap().authority(),
            "bmc:8000"
        );
        let err = parse_url("http://bmc/redfish/v1").unwrap_err();
        assert!(err.message.contains("without a path"), "{err}");
        let err = parse_url("https://bmc.example").unwrap_err();
        assert!(
            err.message.contains("most BMCs serve Redfish over HTTPS"),
            "{err}"
        );
        assert!(err.hint.unwrap().contains("TLS-terminating proxy"));
    }

    #[test]
    fn readings_from_both_resources() {
        let env = Resource::Environment {
            path: "/e".into(),
            energy: true,
        };
        let r = reading_of(
            &env,
            1,
            &json!({"PowerWatts": {"Reading": 374.25}, "EnergykWh": {"Reading": 1.5}}),
        )
        .unwrap();
        assert_eq!(r.power_mw, Some(374_250));
        assert_eq!(r.energy_uj, Some(5_400_000_000_000));
        let legacy = Resource::Power { path: "/p".into() };
        let r = reading_of(
            &legacy,
            0,
            &json!({"PowerControl": [{"PowerConsumedWatts": 97}]}),
        )
        .unwrap();
        assert_eq!((r.power_mw, r.energy_uj), (Some(97_000), None));
        let err = reading_of(
            &legacy,
            0,
            &json!({"PowerControl": [{"PowerConsumedWatts": null}]}),
        )
        .unwrap_err();
        assert!(err.contains("null"), "{err}");
        let err = reading_of(&env, 0, &json!({"PowerWatts": {"Reading": -3}})).unwrap_err();
        assert!(err.contains("not a power"), "{err}");
        let err = reading_of(
            &env,
            0,
            &json!({"PowerWatts": {"Reading": 3}, "EnergykWh": {"Reading": "x"}}),
        )
        .unwrap_err();
        assert!(err.contains("EnergykWh"), "{err}");
    }

    #[test]
    fn an_unchanged_value_is_a_sample_only_once_per_refresh() {
        let r = |mw| Reading {
            device: 0,
            energy_uj: None,
            power_mw: Some(mw),
        };
        let s = 1_000_000_000;
        let last = (r(100), 10 * s);
        assert!(is_new_sample(None, &r(100), 0, 5 * s));
        assert!(!is_new_sample(Some(&last), &r(100), 11 * s, 5 * s));
        assert!(is_new_sample(Some(&last), &r(101), 11 * s, 5 * s));
        assert!(is_new_sample(Some(&last), &r(100), 15 * s, 5 * s));
    }
}
