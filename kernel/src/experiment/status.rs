//! What a run's status means, decided from what was measured, not from
//! whether the code reached its end: `complete` only when the run measured
//! what it says; `degraded` with the reasons when it measured less; `failed`
//! when there is no usable figure; `interrupted` when a signal stopped it.

use super::result::RunStatus;
use crate::loadgen::{Phase, RequestRecord};

/// What the decision looks at.
pub struct Evidence<'a> {
    pub interrupted: bool,
    /// What stopped the run, if something did.
    pub error: Option<&'a str>,
    /// Whether an engine drove the run (requests are then part of the measurement).
    pub inference: bool,
    pub records: &'a [RequestRecord],
    /// The energy total over the measured window.
    pub total_j: Option<f64>,
    pub max_failed_fraction: f64,
    /// Problems noticed while running (a source lost, coverage too low…).
    pub reasons: &'a [String],
}

pub fn decide(e: &Evidence<'_>) -> (RunStatus, Vec<String>) {
    let mut reasons: Vec<String> = e.reasons.to_vec();
    let measured: Vec<&RequestRecord> = e
        .records
        .iter()
        .filter(|r| r.phase == Phase::Measured)
        .collect();
    let failed = measured.iter().filter(|r| !r.success).count();
    if e.interrupted {
        reasons.insert(
            0,
            "stopped by a signal (Ctrl-C, SIGTERM or SIGHUP) before the end".into(),
        );
        return (RunStatus::Interrupted, reasons);
    }
    if let Some(error) = e.error {
        reasons.insert(0, error.to_owned());
        return (RunStatus::Failed, reasons);
    }
    if e.total_j.is_none() {
        reasons.insert(
            0,
            "no energy source produced a figure for the measured window".into(),
        );
        return (RunStatus::Failed, reasons);
    }
    if e.inference {
        if measured.is_empty() {
            reasons.insert(0, "no measured request was sent".into());
            return (RunStatus::Failed, reasons);
        }
        if failed == measured.len() {
            let first = measured
                .iter()
                .find_map(|r| r.error.as_deref())
                .unwrap_or("unknown error");
            reasons.insert(
                0,
                format!(
                    "every measured request failed ({failed} of {}); first error: {first}",
                    measured.len()
                ),
            );
            return (RunStatus::Failed, reasons);
        }
        let fraction = failed as f64 / measured.len() as f64;
        if fraction > e.max_failed_fraction {
            reasons.push(format!(
                "{failed} of {} measured requests failed ({:.1} %, above [measurement].max_failed_fraction = {:.1} %); figures cover the successful ones",
                measured.len(),
                fraction * 100.0,
                e.max_failed_fraction * 100.0
            ));
        }
    }
    if reasons.is_empty() {
        (RunStatus::Complete, reasons)
    } else {
        (RunStatus::Degraded, reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(success: bool) -> RequestRecord {
        RequestRecord {
            index: 0,
            prompt_id: String::new(),
            phase: Phase::Measured,
            send_ns: 0,
            first_token_ns: None,
            chunk_ns: vec![],
            end_ns: 1,
            input_tokens: None,
            output_tokens: None,
            tokens_from_usage: false,
            output_text_len: 0,
            output_text: None,
            success,
            error: (!success).then(|| "HTTP 500".to_owned()),
        }
    }

    fn evidence<'a>(records: &'a [RequestRecord], reasons: &'a [String]) -> Evidence<'a> {
        Evidence {
            interrupted: false,
            error: None,
            inference: true,
            records,
            total_j: Some(1.0),
            max_failed_fraction: 0.05,
            reasons,
        }
    }

    #[test]
    fn every_request_failing_is_a_failed_run() {
        let records = vec![record(false); 4];
        let (status, reasons) = decide(&evidence(&records, &[]));
        assert_eq!(status, RunStatus::Failed);
        assert!(
            reasons[0].contains("every measured request failed (4 of 4)"),
            "{reasons:?}"
        );
        assert!(reasons[0].contains("HTTP 500"));
    }

    #[test]
    fn failures_above_the_threshold_degrade_and_below_do_not() {
        // 1 of 10 = 10 % > 5 %.
        let mut records = vec![record(true); 9];
        records.push(record(false));
        assert_eq!(decide(&evidence(&records, &[])).0, RunStatus::Degraded);
        // 1 of 25 = 4 % ≤ 5 %.
        let mut records = vec![record(true); 24];
        records.push(record(false));
        assert_eq!(decide(&evidence(&records, &[])).0, RunStatus::Complete);
    }

    #[test]
    fn a_lost_source_degrades_and_no_energy_fails() {
        let records = vec![record(true); 3];
        let lost = vec!["source `rapl` lost".to_owned()];
        assert_eq!(decide(&evidence(&records, &lost)).0, RunStatus::Degraded);
        let mut e = evidence(&records, &[]);
        e.total_j = None;
        assert_eq!(decide(&e).0, RunStatus::Failed);
    }
}
