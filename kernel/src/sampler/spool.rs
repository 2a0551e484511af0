//! Streams what the sampler reads to the run directory while the run goes on
//! (`timeseries.csv`, `telemetry.csv`), so a crash, a kill or a hang loses at
//! most the last flush period, and memory stays bounded: rows written here are
//! dropped from the in-memory series.

use super::{SourceSeries, lock, source_thread::Shared};
use llem_sdk::{Device, DeviceTelemetry, Reading};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often rows reach the disk.
pub const FLUSH_PERIOD: Duration = Duration::from_millis(500);

pub const TIMESERIES_FILE: &str = "timeseries.csv";
pub const TELEMETRY_FILE: &str = "telemetry.csv";

/// One source as the spool sees it.
pub(super) struct SpoolSource {
    pub name: String,
    pub devices: Vec<Device>,
    pub shared: Arc<Shared>,
}

struct Writers {
    timeseries: csv::Writer<BufWriter<File>>,
    telemetry: Option<csv::Writer<BufWriter<File>>>,
    dir: PathBuf,
    errors: Vec<String>,
}

impl Writers {
    fn create(dir: &Path) -> std::io::Result<Writers> {
        let file = File::create(dir.join(TIMESERIES_FILE))?;
        let mut timeseries = csv::Writer::from_writer(BufWriter::new(file));
        timeseries
            .write_record(["t_ns", "source", "device", "energy_uj", "power_mw"])
            .map_err(std::io::Error::other)?;
        timeseries.flush()?;
        Ok(Writers {
            timeseries,
            telemetry: None,
            dir: dir.to_owned(),
            errors: Vec::new(),
        })
    }

    fn readings(&mut self, source: &str, devices: &[Device], rows: &[(u64, Reading)]) {
        for (t_ns, r) in rows {
            let id = devices
                .get(r.device as usize)
                .map_or("?", |d| d.id.as_str());
            let energy = r.energy_uj.map(|v| v.to_string()).unwrap_or_default();
            let power = r.power_mw.map(|v| v.to_string()).unwrap_or_default();
            let row = [
                t_ns.to_string(),
                source.to_owned(),
                id.to_owned(),
                energy,
                power,
            ];
            if let Err(e) = self.timeseries.write_record(&row) {
                self.error(format!("writing {TIMESERIES_FILE}: {e}"));
                return;
            }
        }
    }

    fn telemetry(&mut self, source: &str, devices: &[Device], rows: &[(u64, DeviceTelemetry)]) {
        if rows.is_empty() {
            return;
        }
        if self.telemetry.is_none() {
            let created = File::create(self.dir.join(TELEMETRY_FILE)).map(|file| {
                let mut w = csv::Writer::from_writer(BufWriter::new(file));
                let _ = w.write_record(["t_ns", "source", "device", "metric", "value", "unit"]);
                w
            });
            match created {
                Ok(w) => self.telemetry = Some(w),
                Err(e) => {
                    self.error(format!("creating {TELEMETRY_FILE}: {e}"));
                    return;
                }
            }
        }
        let Some(out) = self.telemetry.as_mut() else {
            return;
        };
        let mut failed = None;
        'rows: for (t_ns, item) in rows {
            let id = devices
                .get(item.device as usize)
                .map_or("?", |d| d.id.as_str());
            for metric in &item.metrics {
                let row = [
                    t_ns.to_string(),
                    source.to_owned(),
                    id.to_owned(),
                    metric.name.clone(),
                    metric.value.to_string(),
                    metric.unit.clone(),
                ];
                if let Err(e) = out.write_record(&row) {
                    failed = Some(format!("writing {TELEMETRY_FILE}: {e}"));
                    break 'rows;
                }
            }
        }
        if let Some(e) = failed {
            self.error(e);
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.timeseries.flush() {
            self.error(format!("flushing {TIMESERIES_FILE}: {e}"));
        }
        if let Some(t) = self.telemetry.as_mut()
            && let Err(e) = t.flush()
        {
            self.error(format!("flushing {TELEMETRY_FILE}: {e}"));
        }
    }

    /// A full disk is reported once, not once per row.
    fn error(&mut self, text: String) {
        if self.errors.len() < 5 && !self.errors.contains(&text) {
            self.errors.push(text);
        }
    }
}

/// Handed every reading the spool writes, in the order written, right after
/// it is written (source name, its devices, rows): the sinks' feed. It runs on
/// the spool's thread, so it must not block.
pub type ReadingTap = Box<dyn FnMut(&str, &[Device], &[(u64, Reading)]) + Send>;

/// Move every source's new rows to disk (and to the tap).
fn drain(sources: &[SpoolSource], writers: &mut Writers, tap: &mut Option<ReadingTap>) {
    for source in sources {
        let (readings, telemetry) = {
            let mut series: std::sync::MutexGuard<'_, SourceSeries> = lock(&source.shared.series);
            (
                std::mem::take(&mut series.readings),
                std::mem::take(&mut series.telemetry),
            )
        };
        writers.readings(&source.name, &source.devices, &readings);
        writers.telemetry(&source.name, &source.devices, &telemetry);
        if let Some(tap) = tap.as_mut()
            && !readings.is_empty()
        {
            tap(&source.name, &source.devices, &readings);
        }
    }
    writers.flush();
}

/// The spool's thread; `finish` writes the last rows and says what went wrong.
pub struct Spool {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl Spool {
    pub(super) fn start(
        dir: &Path,
        sources: Vec<SpoolSource>,
        mut tap: Option<ReadingTap>,
    ) -> std::io::Result<Spool> {
        let mut writers = Writers::create(dir)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("llem-spool".into())
            .spawn(move || {
                let (lock_, wake) = &*flag;
                let mut stopped = lock_.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    drop(stopped);
                    drain(&sources, &mut writers, &mut tap);
                    stopped = lock_.lock().unwrap_or_else(|e| e.into_inner());
                    if *stopped {
                        break;
                    }
                    stopped = wake
                        .wait_timeout(stopped, FLUSH_PERIOD)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                    if *stopped {
                        drop(stopped);
                        drain(&sources, &mut writers, &mut tap);
                        break;
                    }
                }
                writers.errors
            })?;
        Ok(Spool {
            stop,
            thread: Some(thread),
        })
    }

    /// Write what is left and stop; returns write errors (empty when all went to disk).
    pub fn finish(&mut self) -> Vec<String> {
        {
            let (lock_, wake) = &*self.stop;
            *lock_.lock().unwrap_or_else(|e| e.into_inner()) = true;
            wake.notify_all();
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| vec!["the spool thread panicked".into()]),
            None => Vec::new(),
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
