//! Conversions between the generated host bindings and the SDK's plain types.
//! Text a plugin returns for people (errors, names, descriptions) is cut and
//! sanitised here, at the boundary (see `limits`).

use super::bindings::{backend, dataset, energy, sink, wit_types};
use super::limits::{self, MESSAGE_BYTES, SHORT_BYTES};
use llem_sdk as sdk;

use super::bindings::topology::DevicePlace;
use backend::exports::llem::plugin::backend as wb;
use dataset::exports::llem::plugin::dataset as wd;
use energy::exports::llem::plugin::energy as we;
use sink::exports::llem::plugin::sink as ws;

pub fn plugin_error(e: wit_types::PluginError) -> sdk::PluginError {
    use wit_types::ErrorCode as W;
    sdk::PluginError {
        code: match e.code {
            W::InvalidConfig => sdk::ErrorCode::InvalidConfig,
            W::Unavailable => sdk::ErrorCode::Unavailable,
            W::PermissionDenied => sdk::ErrorCode::PermissionDenied,
            W::Io => sdk::ErrorCode::Io,
            W::Other => sdk::ErrorCode::Other,
        },
        message: limits::text(&e.message, MESSAGE_BYTES),
        key: limits::text_opt(e.key.as_deref(), SHORT_BYTES),
        hint: limits::text_opt(e.hint.as_deref(), SHORT_BYTES),
    }
}

/// Plugin info; an option default that is not JSON is kept as a string.
pub fn plugin_info(i: wit_types::PluginInfo) -> sdk::PluginInfo {
    use wit_types::OptionType as W;
    sdk::PluginInfo {
        name: limits::text(&i.name, SHORT_BYTES),
        kind: match i.kind {
            wit_types::PluginKind::Energy => sdk::PluginKind::Energy,
            wit_types::PluginKind::Backend => sdk::PluginKind::Backend,
            wit_types::PluginKind::Dataset => sdk::PluginKind::Dataset,
            wit_types::PluginKind::Sink => sdk::PluginKind::Sink,
        },
        version: limits::text(&i.version, SHORT_BYTES),
        description: limits::text(&i.description, MESSAGE_BYTES),
        options: i
            .options
            .into_iter()
            .map(|o| sdk::OptionSpec {
                name: limits::text(&o.name, SHORT_BYTES),
                ty: match o.ty {
                    W::String => sdk::OptionType::String,
                    W::Path => sdk::OptionType::Path,
                    W::Integer => sdk::OptionType::Integer,
                    W::Float => sdk::OptionType::Float,
                    W::Boolean => sdk::OptionType::Boolean,
                    W::StringList => sdk::OptionType::StringList,
                    W::IntegerList => sdk::OptionType::IntegerList,
                    W::Table => sdk::OptionType::Table,
                    W::Any => sdk::OptionType::Any,
                },
                default: o.default_json.map(|text| {
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
                }),
                doc: limits::text(&o.doc, MESSAGE_BYTES),
                choices: o
                    .choices
                    .iter()
                    .map(|c| limits::text(c, SHORT_BYTES))
                    .collect(),
            })
            .collect(),
    }
}

pub fn metric(m: wit_types::Metric) -> sdk::Metric {
    sdk::Metric {
        name: m.name,
        value: m.value,
        unit: m.unit,
        labels: m.labels,
    }
}

pub fn device(d: we::Device) -> sdk::Device {
    use sdk::DeviceKind as K;
    use we::DeviceKind as W;
    sdk::Device {
        id: limits::text(&d.id, SHORT_BYTES),
        name: limits::text(&d.name, SHORT_BYTES),
        kind: match d.kind {
            W::Gpu => K::Gpu,
            W::CpuPackage => K::CpuPackage,
            W::CpuCore => K::CpuCore,
            W::CpuUncore => K::CpuUncore,
            W::Dram => K::Dram,
            W::Psys => K::Psys,
            W::Accelerator => K::Accelerator,
            W::System => K::System,
            W::Other => K::Other,
        },
        has_energy_counter: d.has_energy_counter,
        counter_wrap_uj: d.counter_wrap_uj,
        has_power: d.has_power,
        power_average_window_ms: d.power_average_window_ms,
        estimated: d.estimated,
        // Filled from the optional `energy-topology` export, if the plugin has it.
        parent: None,
        max_power_w: None,
    }
}

/// Apply `energy-topology.places` to the devices: parents by index become
/// ids; an index out of range, or a device its own parent, is ignored (with
/// a debug log: the kernel then treats the device as top-level).
pub fn apply_places(plugin: &str, devices: &mut [sdk::Device], places: Vec<DevicePlace>) {
    for place in places {
        let i = place.device as usize;
        let parent = match place.parent.map(|p| p as usize) {
            Some(p) if p != i => devices.get(p).map(|d| d.id.clone()),
            _ => None,
        };
        match devices.get_mut(i) {
            Some(device) => {
                device.parent = parent;
                device.max_power_w = place.max_power_mw.map(|mw| mw as f64 / 1000.0);
            }
            None => tracing::debug!(plugin, index = i, "energy-topology names no such device"),
        }
    }
}

pub fn reading(r: we::Reading) -> sdk::Reading {
    sdk::Reading {
        device: r.device,
        energy_uj: r.energy_uj,
        power_mw: r.power_mw,
    }
}

/// `energy-read-flat`'s numbers (four a reading: device, presence bits,
/// energy, power) as readings appended to `out`; anything but that layout is
/// the plugin's fault, refused whole (nothing is appended).
pub fn flat_readings(flat: &[u64], out: &mut Vec<sdk::Reading>) -> Result<(), String> {
    use sdk::{FLAT_ENERGY, FLAT_POWER}; // the SDK's encoding, one definition
    if !flat.len().is_multiple_of(4) {
        return Err(format!(
            "returned a flat reading list of {} numbers, not a multiple of four",
            flat.len()
        ));
    }
    limits::check_count("a reading list", flat.len() / 4, limits::MAX_DEVICES)?;
    let start = out.len();
    for r in flat.chunks_exact(4) {
        let (device, present) = (r[0], r[1]);
        let bad = if present & !(FLAT_ENERGY | FLAT_POWER) != 0 {
            Some(format!("unknown presence bits {present:#x}"))
        } else {
            u32::try_from(device)
                .err()
                .map(|_| format!("device index {device}, above u32"))
        };
        if let Some(why) = bad {
            out.truncate(start);
            return Err(format!("returned a malformed flat reading: {why}"));
        }
        out.push(sdk::Reading {
            device: device as u32,
            energy_uj: (present & FLAT_ENERGY != 0).then_some(r[2]),
            power_mw: (present & FLAT_POWER != 0).then_some(r[3]),
        });
    }
    Ok(())
}

pub fn telemetry(t: we::DeviceTelemetry) -> sdk::DeviceTelemetry {
    sdk::DeviceTelemetry {
        device: t.device,
        metrics: t.metrics.into_iter().map(metric).collect(),
    }
}

pub fn plan_request(r: &sdk::PlanRequest) -> wb::PlanRequest {
    wb::PlanRequest {
        model: r.model.clone(),
        host: r.host.clone(),
        port: r.port,
        run_dir: r.run_dir.clone(),
    }
}

pub fn engine_plan(p: wb::EnginePlan) -> sdk::EnginePlan {
    sdk::EnginePlan {
        mode: match p.mode {
            wb::EngineMode::Server => sdk::EngineMode::Server,
            wb::EngineMode::Offline => sdk::EngineMode::Offline,
        },
        engine: p.engine,
        program: p.program,
        args: p.args,
        env: p.env,
        api_base_path: p.api_base_path,
        health_path: p.health_path,
        metrics_path: p.metrics_path,
        worker_script: p.worker_script,
        ready_timeout_s: p.ready_timeout_s,
    }
}

pub fn load_request(r: &sdk::LoadRequest) -> wd::LoadRequest {
    wd::LoadRequest {
        model: r.model.clone(),
        tokenizer_path: r.tokenizer_path.clone(),
        seed: r.seed,
        limit: r.limit,
    }
}

pub fn prompt(p: wd::Prompt) -> sdk::Prompt {
    sdk::Prompt {
        id: p.id,
        body: match p.body {
            wd::PromptBody::Text(text) => sdk::PromptBody::Text(text),
            wd::PromptBody::Chat(messages) => sdk::PromptBody::Chat(
                messages
                    .into_iter()
                    .map(|m| sdk::ChatMessage {
                        role: m.role,
                        content: m.content,
                    })
                    .collect(),
            ),
        },
        input_tokens: p.input_tokens,
        max_output_tokens: p.max_output_tokens,
    }
}

pub fn sample_batch(b: &sdk::SampleBatch) -> ws::SampleBatch {
    ws::SampleBatch {
        source: b.source.clone(),
        devices: b.devices.clone(),
        samples: b
            .samples
            .iter()
            .map(|s| ws::Sample {
                device: s.device,
                t_ns: s.t_ns,
                energy_uj: s.energy_uj,
                power_mw: s.power_mw,
            })
            .collect(),
    }
}

pub fn result_document(d: &sdk::ResultDocument) -> ws::ResultDocument {
    ws::ResultDocument {
        schema_version: d.schema_version.clone(),
        run_id: d.run_id.clone(),
        json: d.json.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(device: u32, energy_uj: Option<u64>, power_mw: Option<u64>) -> sdk::Reading {
        sdk::Reading {
            device,
            energy_uj,
            power_mw,
        }
    }

    #[test]
    fn flat_readings_decode_what_the_sdk_encodes() {
        // Every presence combination, zero and extreme values: the SDK's
        // encoding (what every SDK-built plugin sends) decodes to the same readings.
        let readings = vec![
            reading(0, Some(123_456_789), Some(250_000)),
            reading(1, None, Some(0)),
            reading(2, Some(0), None),
            reading(u32::MAX, None, None),
            reading(7, Some(u64::MAX), Some(u64::MAX)),
        ];
        let flat = sdk::flatten_readings(&readings);
        assert_eq!(flat.len(), 4 * readings.len());
        let mut out = vec![reading(9, Some(1), None)]; // appended to, not replaced
        flat_readings(&flat, &mut out).unwrap();
        assert_eq!(out[0], reading(9, Some(1), None));
        assert_eq!(out[1..], readings[..]);
        flat_readings(&[], &mut out).unwrap();
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn a_malformed_flat_list_is_refused_whole() {
        let good = [0, 3, 10, 20];
        for (flat, says) in [
            (vec![0, 3, 10], "not a multiple of four"),
            (
                [&good[..], &[1, 4, 0, 0]].concat(),
                "unknown presence bits 0x4",
            ),
            (
                [&good[..], &[1, 1 << 40, 0, 0]].concat(),
                "unknown presence bits",
            ),
            (
                [&good[..], &[u64::from(u32::MAX) + 1, 1, 5, 0]].concat(),
                "device index 4294967296, above u32",
            ),
            (
                [0, 1, 0, 0].repeat(limits::MAX_DEVICES + 1),
                "more than the",
            ),
        ] {
            let mut out = vec![reading(9, Some(1), None)];
            let error = flat_readings(&flat, &mut out).unwrap_err();
            assert!(error.contains(says), "{error}");
            // Nothing of a refused list is kept, not even its good readings.
            assert_eq!(out, [reading(9, Some(1), None)]);
        }
    }
}
