//! Operational emissions from measured energy:
//!
//! ```text
//! gCO2e = energy_J / 3.6e6 J/kWh × PUE × grid intensity (gCO2e/kWh)
//! ```
//!
//! The measured energy is the IT equipment's (what the devices report); PUE
//! (power usage effectiveness, facility energy / IT energy, ≥ 1) scales it to
//! the facility's. Embodied emissions are not included. The grid intensity and
//! PUE are the user's to set (they depend on place and time); nothing here
//! defaults them.

use serde::{Deserialize, Serialize};

use crate::AnalysisError;

/// Joules in a kilowatt-hour.
pub const J_PER_KWH: f64 = 3.6e6;

/// Where the energy was used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CarbonSettings {
    /// Grid carbon intensity, gCO2e per kWh (location- and time-based).
    pub grid_gco2e_per_kwh: f64,
    /// Facility energy / IT energy (1.0 = no overhead).
    pub pue: f64,
}

/// Emissions over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarbonFigures {
    /// Measured (IT) energy the figures rest on, J.
    pub energy_j: f64,
    /// `energy_j × pue`, in kWh.
    pub facility_kwh: f64,
    /// Operational emissions, gCO2e.
    pub gco2e: f64,
    /// `gco2e × 1000 / output_tokens`, over the same window's tokens.
    pub gco2e_per_1k_tokens: Option<f64>,
    pub grid_gco2e_per_kwh: f64,
    pub pue: f64,
}

/// Emissions for `energy_j` joules and the `output_tokens` generated with them.
pub fn emissions(
    energy_j: f64,
    output_tokens: u64,
    settings: CarbonSettings,
) -> Result<CarbonFigures, AnalysisError> {
    let CarbonSettings {
        grid_gco2e_per_kwh,
        pue,
    } = settings;
    if !(grid_gco2e_per_kwh.is_finite() && grid_gco2e_per_kwh >= 0.0) {
        return Err(AnalysisError::Input(format!(
            "grid intensity {grid_gco2e_per_kwh} gCO2e/kWh must be finite and ≥ 0"
        )));
    }
    if !(pue.is_finite() && pue >= 1.0) {
        return Err(AnalysisError::Input(format!(
            "PUE {pue} must be ≥ 1.0 (facility energy over IT energy)"
        )));
    }
    if !(energy_j.is_finite() && energy_j >= 0.0) {
        return Err(AnalysisError::Input(format!(
            "energy {energy_j} J must be finite and ≥ 0"
        )));
    }
    let facility_kwh = energy_j / J_PER_KWH * pue;
    let gco2e = facility_kwh * grid_gco2e_per_kwh;
    Ok(CarbonFigures {
        energy_j,
        facility_kwh,
        gco2e,
        gco2e_per_1k_tokens: (output_tokens > 0).then(|| gco2e * 1000.0 / output_tokens as f64),
        grid_gco2e_per_kwh,
        pue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn by_hand() -> Result<(), AnalysisError> {
        // 3.6 MJ = 1 kWh; × PUE 1.2 = 1.2 kWh; × 400 g/kWh = 480 g; over 1e6 tokens
        // = 0.48 g per 1k tokens.
        let s = CarbonSettings {
            grid_gco2e_per_kwh: 400.0,
            pue: 1.2,
        };
        let c = emissions(3.6e6, 1_000_000, s)?;
        assert!(close(c.facility_kwh, 1.2));
        assert!(close(c.gco2e, 480.0));
        assert!(c.gco2e_per_1k_tokens.is_some_and(|g| close(g, 0.48)));
        // 1800 J = 5e-4 kWh; × 1.5 = 7.5e-4 kWh; × 250 = 0.1875 g; 500 tokens → 0.375 g/1k.
        let s = CarbonSettings {
            grid_gco2e_per_kwh: 250.0,
            pue: 1.5,
        };
        let c = emissions(1800.0, 500, s)?;
        assert!(close(c.gco2e, 0.1875));
        assert!(c.gco2e_per_1k_tokens.is_some_and(|g| close(g, 0.375)));
        assert_eq!(emissions(1800.0, 0, s)?.gco2e_per_1k_tokens, None);
        Ok(())
    }

    #[test]
    fn nonsense_settings_are_refused() {
        let ok = CarbonSettings {
            grid_gco2e_per_kwh: 100.0,
            pue: 1.1,
        };
        let pue = CarbonSettings { pue: 0.9, ..ok };
        let grid = CarbonSettings {
            grid_gco2e_per_kwh: f64::NAN,
            ..ok
        };
        assert!(emissions(1.0, 1, pue).is_err());
        assert!(emissions(1.0, 1, grid).is_err());
        assert!(emissions(-1.0, 1, ok).is_err());
    }
}
